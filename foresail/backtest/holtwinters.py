"""Additive Holt-Winters exponential smoothing, updated online one observation at a time."""

from __future__ import annotations

import math

import numpy as np


class HoltWinters:
    """Level + trend + additive season of ``season_length`` observations (no season when it is 0 or 1).

    Until ``2 * season_length`` observations have been seen the season is zero and the model is Holt's
    linear trend; the first full season then initialises the seasonal indices (the classic heuristic).
    """

    def __init__(self, alpha: float, beta: float, gamma: float, season_length: int = 0) -> None:
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.m = season_length if season_length > 1 else 0
        self.level = math.nan
        self.trend = 0.0
        self.season = np.zeros(max(self.m, 1))
        self.n = 0
        self._first: list[float] = []

    def update(self, y: float) -> None:
        """Add the next observation (NaN is skipped: the state carries over the gap)."""
        if not math.isfinite(y):
            self.n += 1
            return
        if self.m and len(self._first) < self.m:
            self._first.append(y)
            if len(self._first) == self.m:
                mean = float(np.mean(self._first))
                self.season = np.asarray(self._first) - mean
        s_idx = self.n % self.m if self.m else 0
        s = self.season[s_idx] if self.m and len(self._first) == self.m and self.n >= self.m else 0.0
        if math.isnan(self.level):
            self.level = y - s
        else:
            prev = self.level
            self.level = self.alpha * (y - s) + (1 - self.alpha) * (self.level + self.trend)
            self.trend = self.beta * (self.level - prev) + (1 - self.beta) * self.trend
            if self.m and self.n >= self.m:
                self.season[s_idx] = self.gamma * (y - self.level) + (1 - self.gamma) * s
        self.n += 1

    def forecast(self, h: int) -> float:
        """Forecast ``h`` observations after the last one."""
        if math.isnan(self.level):
            return math.nan
        s = self.season[(self.n - 1 + h) % self.m] if self.m and self.n > self.m else 0.0
        return self.level + h * self.trend + s
