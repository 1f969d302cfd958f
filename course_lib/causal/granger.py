"""Granger causality (chapter 06f): does the past of one series help predict another?

Null hypothesis of a test of ``cause`` -> ``effect`` in a VAR(p): every lag of ``cause`` has a zero
coefficient in the equation of ``effect``, given the lags of every variable in the VAR. It needs
stationary series (:func:`adf_table`) and a lag length that captures the dynamics; a rejection is
about predictability, not intervention, and a common driver left out of the VAR produces one.

* :func:`granger_matrix`: statsmodels' ``VAR.test_causality`` F tests: homoskedastic errors assumed.
* :func:`granger_tests`: equation by equation OLS with a heteroskedasticity-robust covariance (HC3 by
  default; statsmodels ``cov_type``) and a Wald test, then a multiplicity correction over all the
  tests shown (Holm by default; statsmodels ``multipletests``). Financial series have GARCH errors
  whose variance moves with the regressors: the homoskedastic F test then rejects a true null too often.
"""

import numpy as np
import pandas as pd

__all__ = ["adf_table", "granger_matrix", "granger_tests"]


def _check(data: pd.DataFrame, lags: int, check_stationary: bool) -> None:
    if not isinstance(data, pd.DataFrame) or data.shape[1] < 2:
        raise ValueError("Granger tests need a DataFrame with at least two columns (one series each)")
    if lags < 1 or len(data) < 10 * lags * data.shape[1]:
        raise ValueError(f"lags must be >= 1 and the data long enough: {len(data)} rows for {lags} lags")
    if data.isna().any().any() or not np.isfinite(data.to_numpy()).all():
        raise ValueError(
            f"data has NaN or inf values in columns {list(data.columns[~np.isfinite(data).all()])}"
        )
    if check_stationary:
        adf = adf_table(data)
        bad = list(adf.index[~adf["stationary at 5%"].astype(bool)])
        if bad:
            raise ValueError(f"columns {bad} have a unit root by the ADF test at 5%: difference them first")


def adf_table(data: pd.DataFrame) -> pd.DataFrame:
    """Augmented Dickey-Fuller test per column (null: a unit root, i.e. NOT stationary; constant included)."""
    from statsmodels.tsa.stattools import adfuller  # imported here: the models need no statsmodels

    rows = {}
    for name in data.columns:
        stat, p, lags, *_ = adfuller(data[name].to_numpy(), autolag="AIC", result_object=False)
        rows[name] = {"ADF": stat, "p": p, "lags": lags, "stationary at 5%": p < 0.05}
    return pd.DataFrame(rows).T


def granger_matrix(data: pd.DataFrame, lags: int, check_stationary: bool = True) -> pd.DataFrame:
    """p-values of Granger tests in one VAR(lags): entry [cause, effect] tests the null that every lag of
    ``cause`` has a zero coefficient in the equation of ``effect`` (F test, statsmodels' ``test_causality``).

    A small p-value rejects "cause does not Granger-cause effect": its past helps predict the effect
    beyond the past of all variables in the VAR. Homoskedastic errors are assumed (see
    :func:`granger_tests` for the robust version); the ADF check refuses a column with a unit root at 5%.
    """
    _check(data, lags, check_stationary)
    from statsmodels.tsa.api import VAR

    fitted = VAR(data.reset_index(drop=True)).fit(lags, trend="c")  # rows are steps: no date frequency needed
    names = list(data.columns)
    out = pd.DataFrame(np.nan, index=pd.Index(names, name="cause"), columns=pd.Index(names, name="effect"))
    for cause in names:
        for effect in names:
            if cause != effect:
                out.loc[cause, effect] = fitted.test_causality(effect, [cause], kind="f").pvalue
    return out


def granger_tests(
    data: pd.DataFrame,
    lags: int,
    cov_type: str = "HC3",
    correction: str = "holm",
    alpha: float = 0.05,
    check_stationary: bool = True,
) -> pd.DataFrame:
    """One row per ordered pair (cause, effect): the Wald statistic (F form) that the ``lags`` lags of
    ``cause`` are zero in the OLS equation of ``effect`` (constant and ``lags`` lags of every column),
    with statsmodels' ``cov_type`` covariance ("HC3": robust to heteroskedasticity; "nonrobust": the
    classical F test), its p-value, the p-value adjusted for all the rows by ``correction`` (a
    ``multipletests`` method: "holm", "bonferroni", "fdr_bh", ...) and whether that rejects at ``alpha``.
    """
    _check(data, lags, check_stationary)
    import statsmodels.api as sm
    from statsmodels.stats.multitest import multipletests

    names = list(data.columns)
    lagged = pd.concat(
        {f"{c}.L{i}": data[c].shift(i) for i in range(1, lags + 1) for c in names}, axis=1
    ).iloc[lags:]
    design = sm.add_constant(lagged.to_numpy(), has_constant="add")  # (T - p, 1 + k p)
    columns = ["const", *lagged.columns]
    rows = []
    for effect in names:
        fit = sm.OLS(data[effect].to_numpy()[lags:], design).fit(cov_type=cov_type)
        for cause in names:
            if cause == effect:
                continue
            R = np.zeros((lags, len(columns)))
            for i in range(lags):
                R[i, columns.index(f"{cause}.L{i + 1}")] = 1.0
            test = fit.wald_test(R, use_f=True, scalar=True)
            rows.append(
                {"cause": cause, "effect": effect, "F": float(test.statistic), "p": float(test.pvalue)}
            )
    out = pd.DataFrame(rows)
    reject, adjusted, *_ = multipletests(out["p"], alpha=alpha, method=correction)
    out[f"p ({correction})"], out["reject"] = adjusted, reject
    return out
