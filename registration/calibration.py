"""Calibration of the change score (a logistic model on two change features).

Fitted by ``python -m bench.fit_calibration`` on pairs generated with
:func:`registration.synth.make_pair` from ISIC and PAD-UFES images (never from
the PH2 images the dev pairs are made of); see that script for the data and
the fitting. Features: log(1 + evidence mass of the strongest region) and the
peak of the smoothed evidence (see :func:`registration.change.detect_change`).
"""

CHANGE_SCORE_COEFFICIENTS = {
    "intercept": -2.195488,
    "coef": [0.242776, 0.111143],
    "fitted_on": "300 synthetic ISIC/PAD pairs, seed 2024",
}
