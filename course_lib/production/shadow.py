"""Shadow deployment: a challenger forecasts beside the champion, and a test fixed in advance decides.

The champion's forecasts are served; the challenger's are only logged, day by day, next to them
(:class:`ShadowLog`). When the labels arrive they are logged too. Promotion is decided by a test
*pre-registered* before the first shadow day (:class:`PromotionTest`): the loss (QLIKE), the number
of labelled days ``n_days``, the level (5%) and the direction (one-sided: the challenger must be
better). It is run once, on the first ``n_days`` labelled days, and refuses to run earlier: looking
at the p-value every day and stopping when it dips below 5% would reject a true null far more often
than 5% of the time (optional stopping; Armitage, McPherson and Rowe 1969).

The test is Diebold-Mariano (1995) with a Newey-West long-run variance and the Harvey-Leybourne-Newbold
factor (:func:`course_lib.evaluation.comparison.diebold_mariano`) on ``d_t = L(challenger)_t -
L(champion)_t``; H0: E d = 0, H1: E d < 0, one-sided p-value ``P(t_{n-1} <= DM)``.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..evaluation.comparison import diebold_mariano
from ..evaluation.metrics import LOSSES

COLUMNS = ("champion", "challenger", "y")


class ShadowLog:
    """Forecasts of a champion and a challenger per origin date, and the label once it arrives.

    In memory by default; with ``path`` every event is also appended to a JSON-lines file (give it a
    temporary directory, never the working directory), and a log can be re-read with :meth:`load`.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self._rows: dict[pd.Timestamp, dict[str, float]] = {}

    def _append(self, event: dict) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(event) + "\n")

    def record(self, date, champion: float, challenger: float) -> None:
        """Log both forecasts made at origin ``date`` (once per date)."""
        date, champion, challenger = pd.Timestamp(date), float(champion), float(challenger)
        if date in self._rows:
            raise ValueError(f"forecasts for {date.date()} are already logged")
        if not (np.isfinite(champion) and np.isfinite(challenger)):
            raise ValueError(f"forecasts for {date.date()} must be finite, got {champion}, {challenger}")
        self._rows[date] = {"champion": champion, "challenger": challenger, "y": np.nan}
        self._append(
            {"event": "forecast", "date": str(date.date()), "champion": champion, "challenger": challenger}
        )

    def label(self, date, y: float) -> None:
        """Log the realised target of origin ``date`` (it arrives h days after the origin)."""
        date, y = pd.Timestamp(date), float(y)
        if date not in self._rows:
            raise ValueError(f"no forecasts were logged for {date.date()}: a label needs its forecasts")
        if not np.isfinite(y):
            raise ValueError(f"the label of {date.date()} must be finite, got {y}")
        self._rows[date]["y"] = y
        self._append({"event": "label", "date": str(date.date()), "y": y})

    def frame(self) -> pd.DataFrame:
        """One row per origin date: ``champion``, ``challenger`` and ``y`` (NaN until the label arrives)."""
        return pd.DataFrame.from_dict(self._rows, orient="index", columns=list(COLUMNS)).sort_index()

    @classmethod
    def load(cls, path: str | Path) -> "ShadowLog":
        """Rebuild a log from its JSON-lines file (the events replayed in order)."""
        log, events = cls(), [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        for e in events:
            if e["event"] == "forecast":
                log.record(e["date"], e["champion"], e["challenger"])
            else:
                log.label(e["date"], e["y"])
        log.path = Path(path)
        return log


@dataclass
class Decision:
    """The outcome of a promotion test: promote or not, with the statistic and the days it used."""

    promote: bool
    statistic: float
    pvalue: float  # one-sided: small when the challenger has the lower loss
    mean_loss_diff: float  # mean of L(challenger) - L(champion)
    first: pd.Timestamp
    last: pd.Timestamp
    n_days: int


@dataclass(frozen=True)
class PromotionTest:
    """A pre-registered one-sided DM test: promote the challenger if its loss is lower at level ``alpha``.

    ``n_days``: labelled shadow days the test uses, fixed in advance; ``loss``: ``"qlike"`` (log
    volatilities, see :func:`course_lib.evaluation.metrics.loss_series`), ``"se"`` or ``"ae"``.
    """

    n_days: int = 250
    alpha: float = 0.05
    loss: str = "qlike"

    def __post_init__(self):
        if self.n_days < 20:
            raise ValueError(f"n_days must be at least 20 (a HAC variance needs data), got {self.n_days}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def decide(self, log: ShadowLog) -> Decision:
        """Run the test on the first ``n_days`` labelled days of ``log``; refuse if there are fewer."""
        labelled = log.frame().dropna(subset=["y"])
        if len(labelled) < self.n_days:
            raise ValueError(
                f"the test was registered for {self.n_days} labelled days and the log has {len(labelled)}: "
                "wait for the labels (deciding earlier is optional stopping)"
            )
        used = labelled.iloc[: self.n_days]
        dm = diebold_mariano(used["y"], used["challenger"], used["champion"], loss=self.loss)
        pvalue = float(stats.t.cdf(dm.statistic, df=self.n_days - 1))
        return Decision(
            promote=pvalue < self.alpha,
            statistic=dm.statistic,
            pvalue=pvalue,
            mean_loss_diff=dm.mean_loss_diff,
            first=used.index[0],
            last=used.index[-1],
            n_days=self.n_days,
        )
