"""The model card and its plots, written from the evaluation's results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aerd.featurespec import FeatureSpec
from tools.evalkit import fmt

if TYPE_CHECKING:
    from tools.evaluate import Config

# --------------------------------------------------------------------------- reports
def plot_confusions(cms: dict[str, np.ndarray], titles: dict[str, str], labels: list[str],
                    path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cms), figsize=(5.2 * len(cms), 4.8))
    for ax, (name, cm) in zip(np.atleast_1d(axes), cms.items()):
        cm = np.asarray(cm, float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(titles.get(name, name), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_loss(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, c in curves.items():
        ax.plot(np.arange(1, len(c) + 1), c, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training log-loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# the figures issue #3 asks for (leave-actors-out unless named otherwise), %
TARGETS = (("cold8_acc", "lao", 55.0, "8 classes, cold"),
           ("adapt8_acc", "lao", 65.0, "8 classes, adapted"),
           ("adapt4_acc", "lao", 85.0, "seed's 4 classes, speaker-independent (adapted)"),
           ("ours_seedmlp_acc", "seed_protocol", 90.0,
            "seed protocol (random split, 4 classes), cold"),
           ("ours_seedmlp_adapted_acc", "seed_protocol", 90.0,
            "seed protocol, with the daemon's adaptation (each actor's device has heard that "
            "actor's training clips)"))


STREAM_GAP = 3.0
"""Most points the streaming accuracy may lie below the clip-level accuracy."""


def targets_lines(result: dict[str, Any]) -> list[str]:
    """'Targets reached / not reached' lines, computed from the figures themselves."""
    met, missed = [], []
    for key, part, target, name in TARGETS:
        v = result[part]["summary"].get(key)
        if v is None:
            continue
        mean = 100 * v["mean"] if isinstance(v, dict) else 100 * float(np.mean(v))
        (met if mean >= target else missed).append(f"{name} {mean:.1f} (target {target:g})")
    s = result["lao"]["summary"]
    # streaming within 3 points of clips: the daemon's own events against the clips one by
    # one, each way the daemon runs (adaptation off, and on as by default)
    for events, clips_key, how in (("daemon8_cold_acc", "onnx_clip8_acc", "adaptation off"),
                                   ("daemon8_adapted_acc", "adapt8_acc", "adaptation on")):
        if events in s and clips_key in s:
            gap = 100 * (s[clips_key]["mean"] - s[events]["mean"])
            (met if gap <= STREAM_GAP else missed).append(
                f"the daemon's events on a continuous stream vs clips one by one, 8 classes, "
                f"{how}: " + ("the same" if abs(gap) < 0.05 else
                              f"{abs(gap):.1f} points {'lower' if gap > 0 else 'higher'}")
                + f" (target at most {STREAM_GAP:g} lower)")
    out = []
    if met:
        out.append("Targets reached: " + "; ".join(met) + ".")
    if missed:
        out.append("Targets not reached: " + "; ".join(missed) + ".")
    return out + ["The fold spread (about ± 6) is larger than some margins; a different training "
                  "seed moves single folds by 1–2 points.", ""]


def _notes() -> list[str]:
    """Hand-written parts of the card (ablations, how choices were made), kept beside this file."""
    p = Path(__file__).with_name("model_card_notes.md")
    return [*p.read_text(encoding="utf-8").rstrip("\n").splitlines(), ""] if p.exists() else []


GRID8 = "128/256/512 x 0.3/1/3/10"
"""The inner CV's grid of width x alpha for the 8-class models (widened from 256/512 x
0.3/1/3, whose choices lay on its edge; tools/model_card_notes.md)."""
GRID4 = "128/256/512 x 0.03/0.1/0.3/1/3/10"
"""The same for the 4-class models."""


def _width_alpha(cfg: Config, fold8: list[tuple[int, float]]) -> str:
    """The recipe line's MLP width and L2 alpha: fixed, chosen per fold by the inner CV
    (both given per fold), or given per fold for one of them."""
    shipped = f"{cfg.mlp['hidden_layer_sizes'][0]}/{cfg.mlp['alpha']:g}"
    if cfg.fold_hidden is None and cfg.fold_alpha is None:
        return f"{cfg.mlp['hidden_layer_sizes'][0]} units, L2 alpha {cfg.mlp['alpha']:g}"
    chosen = ", ".join(f"{h}/{a:g}" for h, a in fold8)
    if cfg.fold_hidden is not None and cfg.fold_alpha is not None:
        return ("width and L2 alpha chosen together per outer fold by inner leave-actors-out CV "
                f"over {GRID8} (`tools/select_hparams.py --hidden 128,256,512 --alphas "
                f"0.3,1,3,10`; chosen: "
                f"{chosen}; shipped model: {shipped}, by the same inner CV on actors 1–20, "
                "`--final`)")
    return (("width" if cfg.fold_hidden is not None else "L2 alpha")
            + f" per outer fold as given (width/alpha chosen: {chosen}; shipped model: {shipped})")


def markdown(lao_res: dict[str, Any], seed_lao_res: dict[str, Any], seed_res: dict[str, Any],
             cfg: Config) -> str:
    s, q, p = lao_res["summary"], seed_lao_res["summary"], seed_res["summary"]
    g = lambda d, k: fmt(d[k]) if k in d else "–"  # noqa: E731
    # (width, alpha) of each outer fold's 8-class model, as evaluate.lao trains it
    fold8 = [(cfg.fold_hidden[k] if cfg.fold_hidden is not None else cfg.mlp["hidden_layer_sizes"][0],
              cfg.fold_alpha[k] if cfg.fold_alpha is not None else cfg.mlp["alpha"])
             for k in range(5)]
    lines = [
        "## Emotion model: accuracy",
        "",
        "RAVDESS speech, actors 01–20 (1,200 clips). Speaker-independent figures: leave-actors-out",
        "cross-validation, 5 folds of 4 held-out actors (2 male + 2 female), mean ± sample std over",
        "folds, %.",
        "Acc = accuracy, UA = unweighted accuracy (mean per-class recall). A clip is scored like",
        "`aerd classify`: mean probability of its 3 s windows (hop 0.5 s) with speech ≥ 0.2.",
        "",
        "| model | 8 classes Acc | 8 classes UA | 4 classes Acc | 4 classes UA |",
        "|---|---|---|---|---|",
        f"| seed prototype (seed180 whole clip, MLP 300) | {g(q, 'seed8_acc')} | {g(q, 'seed8_ua')} "
        f"| {g(q, 'seed4_acc')} | {g(q, 'seed4_ua')} |",
        f"| default, cold (no adaptation) | {g(s, 'cold8_acc')} | {g(s, 'cold8_ua')} "
        f"| {g(s, 'cold4_acc')} | {g(s, 'cold4_ua')} |",
        f"| default, adapted (per-device normaliser, all clips incl. warm-up) | {g(s, 'adapt8_acc')} "
        f"| {g(s, 'adapt8_ua')} | {g(s, 'adapt4_acc')} | {g(s, 'adapt4_ua')} |",
        f"| default, adapted, clips after warm-up only | {g(s, 'adapt8_postwarmup_acc')} "
        f"| {g(s, 'adapt8_postwarmup_ua')} | {g(s, 'adapt4_postwarmup_acc')} "
        f"| {g(s, 'adapt4_postwarmup_ua')} |",
        f"| int8 variant (onnxruntime dynamic quantisation), cold | {g(s, 'int8_cold8_acc')} "
        f"| {g(s, 'int8_cold8_ua')} | {g(s, 'int8_cold4_acc')} | {g(s, 'int8_cold4_ua')} |",
        f"| int8 variant, adapted | {g(s, 'int8_adapt8_acc')} | {g(s, 'int8_adapt8_ua')} "
        f"| {g(s, 'int8_adapt4_acc')} | {g(s, 'int8_adapt4_ua')} |",
        "",
        "4 classes = the seed's calm, happy, fearful, disgust. Adaptation is evaluated in streaming",
        "order on each held-out actor (one device, random clip order; statistics only from windows",
        f"already heard; warm-up {cfg.adapt['warmup_windows']} speech window(s) with the cold model, "
        f"then the adaptation graph on features normalised with the device's running statistics",
        f"shrunk toward the training population's with a weight of "
        f"{cfg.adapt.get('prior_count', 0):g} windows).",
        "",
        "| other protocols | Acc | UA |",
        "|---|---|---|",
        f"| seed protocol (4 classes, random 75/25 clip split, 5 repeats): seed recipe "
        f"| {g(p, 'seed_acc')} | {g(p, 'seed_ua')} |",
        f"| seed protocol: our features, the seed's MLP settings | {g(p, 'ours_seedmlp_acc')} "
        f"| {g(p, 'ours_seedmlp_ua')} |",
        f"| seed protocol: our features, the seed's MLP settings, with the daemon's adaptation "
        f"(each actor's device has heard that actor's training clips, labels unused; the test "
        f"clips are never heard before they are classified) | {g(p, 'ours_seedmlp_adapted_acc')} "
        f"| {g(p, 'ours_seedmlp_adapted_ua')} |",
        f"| seed protocol: default recipe (regularised for new speakers) | {g(p, 'ours_acc')} "
        f"| {g(p, 'ours_ua')} |",
        f"| 8 classes, continuous stream (clips + 1.5 s noise gaps), ONNX | {g(s, 'stream8_acc')} "
        f"| {g(s, 'stream8_ua')} |",
        f"| 8 classes, same ONNX models, clips one by one | {g(s, 'onnx_clip8_acc')} "
        f"| {g(s, 'onnx_clip8_ua')} |",
        f"| 8 classes, the daemon's own events: one stream per held-out actor through its "
        f"FileSource, Pipeline and Decider (smoothing, hysteresis), adaptation off "
        f"| {g(s, 'daemon8_cold_acc')} | {g(s, 'daemon8_cold_ua')} |",
        f"| 8 classes, the same with adaptation on (the daemon's default) "
        f"| {g(s, 'daemon8_adapted_acc')} | {g(s, 'daemon8_adapted_ua')} |",
        f"| 8 classes, adapted, each device hearing its clips grouped by emotion "
        f"| {g(s, 'adapt8_blocked_acc')} | {g(s, 'adapt8_blocked_ua')} |",
        f"| 8 classes, a device that only hears neutral, calm and sad speech: cold "
        f"| {g(s, 'cold8_lowarousal_acc')} | {g(s, 'cold8_lowarousal_ua')} |",
        f"| the same device, adapted | {g(s, 'adapt8_lowarousal_acc')} "
        f"| {g(s, 'adapt8_lowarousal_ua')} |",
        f"| 8 classes, noisy/reverberant room (a held-out copy from the training augmentation's "
        f"generator, so in-distribution), cold "
        f"| {g(s, 'cold8_room_acc')} | {g(s, 'cold8_room_ua')} |",
        f"| 8 classes, same room, adapted | {g(s, 'adapt8_room_acc')} | {g(s, 'adapt8_room_ua')} |",
        "",
        "Recipe: rich features (aerd/features.py and aerd/windowstats.py, "
        f"{FeatureSpec().n_features} values per 3 s window, the daemon's own code"
        + ("" if FeatureSpec().spectral_floor_db is None else
           f"; mel bands over the power of white noise at {FeatureSpec().spectral_floor_db:g} "
           "dBFS, a microphone's noise floor")
        + ") of stream windows and whole clips; training copies of every clip: clean, "
        f"{cfg.n_aug} room-augmented (noise, gain, reverb) and speed-perturbed by "
        f"{', '.join(f'{f:g}' for f in cfg.speeds)} (soxr resampling: pitch, formants and tempo "
        "scale together, a new \"speaker\"), and vocal-tract-length perturbed (VTLP: the mel "
        "filters warped, formants moved apart from pitch; (speed, warp) "
        f"{', '.join(f'{f:g}/{w:g}' for f, w in cfg.warps)}); StandardScaler + MLP, one hidden layer; "
        + _width_alpha(cfg, fold8)
        + ". Adapted graph: the same MLP trained on per-device normalised windows computed "
        "causally in stream order, exactly as the daemon normalises them."
        + ("" if cfg.fold_alpha4 is None and cfg.fold_hidden4 is None else
           " The 4-class models take their own width and alpha per outer fold, chosen by the "
           f"same inner CV scored on the 4 classes, over {GRID4} (`--classes 4`; chosen: " + ", ".join(
               f"{h or h8}/{f'{a:g}' if a is not None else '8-class'}"
               for h, a, (h8, _) in zip(cfg.fold_hidden4 or [None] * 5,
                                        cfg.fold_alpha4 or [None] * 5, fold8))
           + ").")
        + ("" if cfg.fold_mix4 is None else
           " The 4-class figures are those of a mix of models chosen per outer fold by the same "
           "inner CV scored on the adapted 4-class accuracy (`select_hparams.py --classes 4 "
           "--mix4`; candidates: the 4-class model alone, 3 training seeds of it, the 8-class "
           "model restricted to the 4 classes and renormalised, a 4 + \"other\" model, and "
           "averages of these; chosen: " + ", ".join(cfg.fold_mix4) + ")."),
        "",
        *targets_lines({"lao": lao_res, "seed_protocol": seed_res}),
        *_notes(),
        "The random clip split puts every actor in both training and test data and overstates",
        "accuracy; the leave-actors-out figures are the ones to expect on new speakers.",
        "Actors 21–24 are kept back as an unseen test set and were not used.",
        "",
        "Figures: `models/confusion.png` (8 classes, pooled over folds), `models/loss.png`.",
        "",
        "Data: RAVDESS — Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of",
        "Emotional Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391.",
        "https://doi.org/10.1371/journal.pone.0196391 — licensed CC BY-NC-SA 4.0; the models",
        "trained on it carry the same license (non-commercial, share-alike, attribution).",
        "",
    ]
    return "\n".join(lines)
