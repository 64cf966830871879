"""Error breakdown of decoded people against the labelled ones: why a person is missed, what the surplus is.

Per labelled person: the best OKS of any detection and, when it is below ``GOOD_OKS``, the cause read off
that best detection's keypoints (each labelled keypoint is right when its COCO keypoint similarity is at
least ``KEYPOINT_OK``):

- ``merged``: a wrong keypoint lies on another labelled person's keypoint of that type (merged with a
  neighbour);
- ``swapped``: it lies on the person's own mirror keypoint (left and right exchanged);
- ``split``: the best detection lacks it but another detection has it right (split into fragments);
- ``missing``: no detection has it;
- ``misplaced``: anything else.

The cause is the one that costs the most OKS. Each labelled keypoint's shortfall ``1 - similarity``
(divided by the labelled count, so that they sum to ``1 - OKS``) is also totalled per cause, with the
shortfall of right keypoints as ``imprecise``. Detections are matched to people as
COCOeval does (by score, each to the free person of highest OKS >= 0.5); an unmatched detection is surplus:
a ``fragment`` (most of its keypoints right on a person matched to another detection), a ``duplicate``
(OKS >= 0.5 with a matched person) or a ``phantom``. Tables group people by the number of labelled people in
their image and by area (COCO's small < 32**2 <= medium < 96**2 <= large).
"""
from __future__ import annotations

import numpy as np

from simplepose.data.oracle_scenes import COCO_FLIP
from simplepose.skeleton import COCO_SIGMAS

#: A person is found well when some detection has at least this OKS with it.
GOOD_OKS = 0.9
#: A keypoint is right when its COCO similarity ``exp(-d^2 / (2 s^2 k^2))`` is at least this.
KEYPOINT_OK = 0.5
CAUSES = ("merged", "swapped", "split", "missing", "misplaced")
PEOPLE_BINS = ((1, 1), (2, 3), (4, 7), (8, 12), (13, 10 ** 6))
SIZE_NAMES = ("small", "medium", "large")

_VARS = (2.0 * np.asarray(COCO_SIGMAS)) ** 2


def keypoint_similarity(gt, areas, dt) -> np.ndarray:
    """COCO's per-keypoint similarity of every (labelled person, detection, keypoint); absent ones are 0.

    Shapes: ``gt (G, 17, 3)``, ``areas (G,)``, ``dt (D, 17, 3)`` -> ``(G, D, 17)``.
    """
    d2 = ((gt[:, None, :, :2] - dt[None, :, :, :2]) ** 2).sum(-1)
    e = d2 / _VARS / (np.asarray(areas, np.float64)[:, None, None] + np.spacing(1)) / 2.0
    ks = np.exp(-e)
    return np.where((gt[:, None, :, 2] > 0) & (dt[None, :, :, 2] > 0), ks, 0.0)


def oks(gt, areas, dt) -> np.ndarray:
    """COCO's OKS of every (labelled person, detection). Shapes: as above -> ``(G, D)``."""
    labelled = (gt[:, :, 2] > 0).sum(-1)
    return keypoint_similarity(gt, areas, dt).sum(-1) / np.maximum(labelled, 1)[:, None]


def size_name(area: float) -> str:
    return SIZE_NAMES[0] if area < 32 ** 2 else SIZE_NAMES[1] if area < 96 ** 2 else SIZE_NAMES[2]


def people_bin(n: int) -> str:
    for lo, hi in PEOPLE_BINS:
        if lo <= n <= hi:
            return f"{lo}-{hi}" if hi < 10 ** 6 else f"{lo}+"
    return "0"


def match(o, scores) -> np.ndarray:
    """COCOeval's greedy matching at OKS 0.5: the person index of every detection (-1 = unmatched).

    Shapes: ``o (G, D)``, ``scores (D,)`` -> ``(D,)``.
    """
    taken = np.zeros(o.shape[0], bool)
    out = np.full(o.shape[1], -1)
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        best, g_best = 0.5 - 1e-10, -1
        for g in range(o.shape[0]):
            if not taken[g] and o[g, d] >= best:
                best, g_best = o[g, d], g
        if g_best >= 0:
            taken[g_best] = True
            out[d] = g_best
    return out


def image_breakdown(gt, areas, dt, scores) -> tuple[list[dict], list[dict]]:
    """Per labelled person ``{best_oks, cause, size}`` and per unmatched detection ``{score, kind, size}``,
    plus the scores of matched detections (as rows ``{score, kind: "true"}`` in the second list).

    Shapes: ``gt (G, 17, 3)`` labelled people only; ``dt (D, 17, 3)`` with scores as the third column.
    """
    gt, dt = np.asarray(gt, np.float64).reshape(-1, 17, 3), np.asarray(dt, np.float64).reshape(-1, 17, 3)
    ks = keypoint_similarity(gt, areas, dt)
    o = ks.sum(-1) / np.maximum((gt[:, :, 2] > 0).sum(-1), 1)[:, None]
    people = []
    for g in range(len(gt)):
        best = float(o[g].max()) if len(dt) else 0.0
        lost = _keypoint_causes(gt, areas, dt, ks, g, int(o[g].argmax()) if len(dt) else -1)
        wrong = {c: lost[c] for c in CAUSES}
        cause = max(CAUSES, key=lambda c: (wrong[c], -CAUSES.index(c))) if best < GOOD_OKS else None
        if cause is not None and wrong[cause] == 0.0:
            cause = "misplaced"
        people.append({"best_oks": best, "cause": cause, "lost": lost, "size": size_name(areas[g])})
    owner = match(o, scores)
    dets = []
    for d in range(len(dt)):
        if owner[d] >= 0:
            dets.append({"score": float(scores[d]), "kind": "true", "size": size_name(areas[owner[d]])})
            continue
        right = (ks[:, d] >= KEYPOINT_OK).sum(-1) if len(gt) else np.zeros(0)
        near = int(right.argmax()) if len(gt) and right.max() > 0 else -1
        present = max(int((dt[d, :, 2] > 0).sum()), 1)
        if len(gt) and o[:, d].max() >= 0.5:
            kind = "duplicate"
        elif near >= 0 and right[near] >= 0.5 * present:
            kind = "fragment"
        else:
            kind = "phantom"
        dets.append({"score": float(scores[d]), "kind": kind, "size": size_name(areas[near]) if near >= 0 else "-"})
    return people, dets


def _keypoint_causes(gt, areas, dt, ks, g, d) -> dict:
    """Why each labelled keypoint of person g falls short in detection d: ``{cause: OKS lost}``.

    A right keypoint (similarity >= ``KEYPOINT_OK``) loses ``1 - similarity`` to ``imprecise``; a wrong one
    loses ``1 - similarity`` to its cause (``CAUSES``). Losses are divided by the labelled count, so they sum
    to ``1 - OKS``.
    """
    lost = dict.fromkeys(("imprecise",) + CAUSES, 0.0)
    own = gt[g, :, 2] > 0
    share = 1.0 / max(int(own.sum()), 1)
    for j in np.flatnonzero(own):
        k = ks[g, d, j] if d >= 0 else 0.0
        if k >= KEYPOINT_OK:
            lost["imprecise"] += (1.0 - k) * share
            continue
        if d < 0 or dt[d, j, 2] <= 0:
            cause = "split" if (ks[g, :, j] >= KEYPOINT_OK).any() else "missing"
        else:
            at = dt[d, j, :2]
            tol = 2.0 * _VARS[j] * (areas[g] + np.spacing(1)) * np.log(1.0 / KEYPOINT_OK)  # squared distance
            others = [h for h in range(len(gt)) if h != g and gt[h, j, 2] > 0]
            if any(((gt[h, j, :2] - at) ** 2).sum() <= tol for h in others):
                cause = "merged"
            elif gt[g, COCO_FLIP[j], 2] > 0 and ((gt[g, COCO_FLIP[j], :2] - at) ** 2).sum() <= tol:
                cause = "swapped"
            else:
                cause = "misplaced"
        lost[cause] += (1.0 - k) * share
    return lost


class Breakdown:
    """Accumulates :func:`image_breakdown` over images; :meth:`tables` summarises."""

    def __init__(self):
        self.people, self.dets = [], []

    def add(self, gt, areas, dt, scores) -> None:
        people, dets = image_breakdown(gt, areas, dt, scores)
        group = people_bin(len(people))
        for row in people + dets:
            row["people"] = group
        self.people += people
        self.dets += dets

    def summary(self) -> dict:
        """Counts by group, by size and overall (JSON-friendly)."""
        out = {"all": self._summarise(self.people, self.dets)}
        for key, names in (("people", [people_bin(lo) for lo, _ in PEOPLE_BINS]), ("size", SIZE_NAMES)):
            out[f"by_{key}"] = {n: self._summarise([p for p in self.people if p[key] == n],
                                                   [d for d in self.dets if d[key] == n]) for n in names}
        return out

    @staticmethod
    def _summarise(people, dets) -> dict:
        best = np.array([p["best_oks"] for p in people])
        true = np.array([d["score"] for d in dets if d["kind"] == "true"])
        surplus = [d for d in dets if d["kind"] != "true"]
        extra = np.array([d["score"] for d in surplus])
        cut = float(np.percentile(true, 10)) if len(true) else np.inf
        return {"people": len(people), "mean_best_oks": float(best.mean()) if len(best) else None,
                "below_0.5": int((best < 0.5).sum()), "0.5-0.75": int(((best >= 0.5) & (best < 0.75)).sum()),
                "0.75-0.9": int(((best >= 0.75) & (best < GOOD_OKS)).sum()),
                "causes": {c: sum(p["cause"] == c for p in people) for c in CAUSES},
                "oks_lost": {c: float(sum(p["lost"][c] for p in people)) for c in ("imprecise",) + CAUSES},
                "detections": len(dets), "true": len(true), "surplus": len(surplus),
                "surplus_kinds": {k: sum(d["kind"] == k for d in surplus)
                                  for k in ("fragment", "duplicate", "phantom")},
                "true_score_p10_p50": [float(np.percentile(true, q)) for q in (10, 50)] if len(true) else None,
                "surplus_score_p50_p90": [float(np.percentile(extra, q)) for q in (50, 90)] if len(extra) else None,
                "surplus_above_true_p10": int((extra >= cut).sum())}


def format_tables(summary: dict) -> str:
    """The summary as two plain-text tables (people and surplus), one row per group and size."""
    head = (f"{'group':>8} {'people':>6} {'meanOKS':>7} {'<.5':>4} {'<.75':>4} {'<.9':>4} "
            + " ".join(f"{c:>9}" for c in CAUSES) + "  OKS lost per person: "
            + " ".join(f"{c[:6]:>6}" for c in ("imprecise",) + CAUSES))
    head2 = (f"{'group':>8} {'dets':>5} {'true':>5} {'surplus':>7} {'frag':>5} {'dup':>4} {'phant':>5} "
             f"{'true p10/p50':>13} {'surp p50/p90':>13} {'surp>=true p10':>14}")
    rows, rows2 = [head], [head2]
    groups = [("all", summary["all"])] + list(summary["by_people"].items()) + list(summary["by_size"].items())
    for name, s in groups:
        if not s["people"] and not s["detections"]:
            continue
        mean = f"{s['mean_best_oks']:.3f}" if s["mean_best_oks"] is not None else "-"
        rows.append(f"{name:>8} {s['people']:6d} {mean:>7} {s['below_0.5']:4d} {s['0.5-0.75']:4d} "
                    f"{s['0.75-0.9']:4d} " + " ".join(f"{s['causes'][c]:9d}" for c in CAUSES) + " " * 23
                    + " ".join(f"{s['oks_lost'][c] / max(s['people'], 1):6.4f}" for c in ("imprecise",) + CAUSES))
        tp = "/".join(f"{v:.3f}" for v in s["true_score_p10_p50"]) if s["true_score_p10_p50"] else "-"
        sp = "/".join(f"{v:.3f}" for v in s["surplus_score_p50_p90"]) if s["surplus_score_p50_p90"] else "-"
        k = s["surplus_kinds"]
        rows2.append(f"{name:>8} {s['detections']:5d} {s['true']:5d} {s['surplus']:7d} {k['fragment']:5d} "
                     f"{k['duplicate']:4d} {k['phantom']:5d} {tp:>13} {sp:>13} {s['surplus_above_true_p10']:14d}")
    return "\n".join(rows) + "\n\n" + "\n".join(rows2)
