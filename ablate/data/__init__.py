"""Data: the sources and their fingerprint (`sources`), the MNIST-rot benchmark files
(`mnist_rot`), and rotation, augmentation and padding on the device (`augment`)."""
