"""Small statistics: medians with ranges, percentiles."""
import statistics
from typing import Iterable, Optional


def summary(values: Iterable[Optional[float]]) -> Optional[dict]:
    """{"median", "min", "max", "n", "values"} of the non-None values, or None when there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}


def percentile(sorted_values, p: float) -> Optional[float]:
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def fmt_num(v, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{v:,.0f}"


def fmt_summary(s: Optional[dict], digits: int = 0, unit: str = "") -> str:
    """"median (min–max, n=3)" or "value" when there is one run."""
    if not s:
        return "n/a"
    u = f" {unit}" if unit else ""
    if s["n"] == 1:
        return f"{fmt_num(s['median'], digits)}{u}"
    return f"{fmt_num(s['median'], digits)}{u} ({fmt_num(s['min'], digits)}–{fmt_num(s['max'], digits)}, n={s['n']})"
