"""The three arms' models at a learnable-parameter budget: plain CNN, learnable-repetition CNN,
C_N G-CNN; the arm registry (`arms`, torch-free), the model spec and builder (`spec`), the
budget solver (`budget`) and the seed paper's own models (`paper`). Import from the modules."""
