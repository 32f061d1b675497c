"""Data: the allowed values, torch-free (`names`), the sources and their fingerprint (`sources`),
a user's files (`files`), the MNIST-rot benchmark files (`mnist_rot`), and rotation,
augmentation and padding on the device (`augment`)."""
