"""How long do volatility shocks last? Half-lives of the classical models, beside a Koopman spectrum.

* :func:`garch_persistence`: GARCH(1,1) on returns (arch); a variance shock decays like
  (alpha + beta)^h, so its half-life is ln 0.5 / ln(alpha + beta) days.
* :func:`har_ar_coefficients`: HAR (Corsi 2009) on a daily series, v_{t+1} = b0 + b1 v_t + b5 mean_5(v)_t
  + b22 mean_22(v)_t, is a *restricted* AR(22): coefficient b1 + b5/5 + b22/22 on lag 1, b5/5 + b22/22 on
  lags 2-5, b22/22 on lags 6-22. Its impulse response
  (:func:`course_lib.models.koopman.impulse_response`) gives its half-life.
"""

import numpy as np

__all__ = ["garch_persistence", "har_ar_coefficients"]


def garch_persistence(returns) -> dict[str, float]:
    """alpha, beta, persistence alpha + beta and half-life ln 0.5 / ln(alpha + beta) of a GARCH(1,1)
    with constant mean fitted to ``returns`` (percent returns, as in the course's frames)."""
    from arch.univariate import GARCH, ConstantMean

    fit = ConstantMean(np.asarray(returns, dtype=float), volatility=GARCH(1, 0, 1), rescale=False).fit(
        disp="off"
    )
    alpha, beta = float(fit.params["alpha[1]"]), float(fit.params["beta[1]"])
    persistence = alpha + beta
    life = np.log(0.5) / np.log(persistence) if persistence < 1 else np.inf
    return {"alpha": alpha, "beta": beta, "persistence": persistence, "half-life": float(life)}


def har_ar_coefficients(series, lags=(1, 5, 22)) -> tuple[np.ndarray, float]:
    """Fit HAR by least squares on a daily ``series`` and return its AR(max lag) coefficients (lag 1
    first) and intercept: each average's coefficient spread evenly over the days it averages."""
    v = np.asarray(series, dtype=float)
    p = max(lags)
    window = np.lib.stride_tricks.sliding_window_view(v[:-1], p)[:, ::-1]  # (N, p): lag 1 first
    design = np.column_stack([np.ones(len(window))] + [window[:, :k].mean(1) for k in lags])
    beta, *_ = np.linalg.lstsq(design, v[p:], rcond=None)
    ar = np.zeros(p)
    for b, k in zip(beta[1:], lags, strict=True):
        ar[:k] += b / k
    return ar, float(beta[0])
