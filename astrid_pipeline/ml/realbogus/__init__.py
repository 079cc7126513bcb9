"""Real/bogus classification of science / reference / difference triplets (63x63, ZTF-alert style).

A small CNN in the spirit of ZTF's published real/bogus networks (braai,
Duev et al. 2019, MNRAS 489, 3582: VGG-like 3x3 convolutions, max pooling,
dropout, a sigmoid real/bogus output), with a second softmax head over the
real transient types. Modules:

- :mod:`.normalize` (no torch): the per-stamp robust normalisation every
  input goes through, the same in training and on survey cutouts;
- :mod:`.model`: the network; :mod:`.train`: seeded training with history
  and plots; :mod:`.evaluate`: ROC / PR, FPR at 95 % TPR, FNR at 1 % FPR,
  per-type recall and confusion, calibration;
- :mod:`.score`: :func:`~.score.score_triplets` and loading the shipped
  weights; :mod:`.ship`: remakes the shipped weights.

Importing this package does not import torch.
"""
