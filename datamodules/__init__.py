"""What turns files into tensors and tables: the video reader, frame sampling, transforms, the
distortion simulator, VMAF labels, the embedded sample corpus and (later) the DataModules."""
