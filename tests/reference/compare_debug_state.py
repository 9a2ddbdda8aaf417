"""Compares the engine's debug state (S.h5) with the reference (R.h5 from make_debug_inputs.py).

For `logits`, `loss` and every `grads/<name>` of the reference it prints the relative error
‖s − r‖ / ‖r‖ (‖·‖ = Frobenius norm over the whole tensor; the absolute ‖s‖ where ‖r‖ = 0) and the largest
absolute difference, then the worst offenders. It fails (exit 1) when any relative error exceeds --tol, a
tensor is missing, has another shape or is not finite, or S.h5 has a gradient the reference does not know.

Usage: python3 tests/reference/compare_debug_state.py R.h5 S.h5 [--tol 1e-4] [--worst 5]
                                                     [--label TEXT] [--summary FILE]
--summary appends one tab-separated line (label, tensors, failures, worst tensor, worst error, PASS/FAIL).
"""

import argparse
import json
import sys

import h5py
import numpy as np


def dataset_names(f):
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def ordered_reference_names(r):
    grads = json.loads(r.attrs["parameter_names"]) if "parameter_names" in r.attrs else \
        sorted(n[len("grads/"):] for n in dataset_names(r) if n.startswith("grads/"))
    return ["logits", "loss"] + ["grads/" + g for g in grads]


def compare(r_path, s_path, tol):
    """Rows (name, shape, rel, max_abs, problem) and the names S.h5 has that R.h5 lacks."""
    rows = []
    with h5py.File(r_path, "r") as r, h5py.File(s_path, "r") as s:
        names = ordered_reference_names(r)
        extra = sorted(set(dataset_names(s)) - set(names))
        for name in names:
            ref = np.asarray(r[name][()], dtype=np.float64)
            if name not in s:
                rows.append((name, ref.shape, float("inf"), float("inf"), "missing"))
                continue
            got = np.asarray(s[name][()], dtype=np.float64)
            if got.shape != ref.shape and not (got.size == 1 and ref.size == 1):
                rows.append((name, ref.shape, float("inf"), float("inf"), "shape %s" % (got.shape,)))
                continue
            got = got.reshape(ref.shape)
            if not np.all(np.isfinite(got)):
                rows.append((name, ref.shape, float("inf"), float("inf"), "non-finite"))
                continue
            diff = got - ref
            ref_norm = np.linalg.norm(ref)
            rel = np.linalg.norm(diff) / ref_norm if ref_norm > 0 else np.linalg.norm(got)
            max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
            rows.append((name, ref.shape, float(rel), max_abs, "" if rel <= tol else "> tol"))
    return rows, extra


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", help="R.h5 from make_debug_inputs.py")
    ap.add_argument("state", help="S.h5 from debug_state")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest relative error allowed (default 1e-4, f32)")
    ap.add_argument("--worst", type=int, default=5, help="how many worst offenders to list")
    ap.add_argument("--label", default="", help="name of this comparison in the output and summary")
    ap.add_argument("--summary", help="append a one-line tab-separated result to this file")
    args = ap.parse_args()

    rows, extra = compare(args.reference, args.state, args.tol)
    width = max(len(r[0]) for r in rows)
    title = "%s vs %s%s (tol %.1e)" % (args.state, args.reference, " [%s]" % args.label if args.label else "",
                                       args.tol)
    print(title)
    print("%-*s  %-16s  %12s  %12s  %s" % (width, "tensor", "shape", "rel error", "max |diff|", "status"))
    for name, shape, rel, max_abs, problem in rows:
        print("%-*s  %-16s  %12.3e  %12.3e  %s" % (width, name, "x".join(map(str, shape)) or "()", rel, max_abs,
                                                    "FAIL " + problem if problem else "ok"))
    failures = [r for r in rows if r[4]]
    extra_grads = [n for n in extra if n.startswith("grads/")]
    for name in extra:
        print("%s: in the state file but not in the reference%s"
              % (name, " (FAIL: unknown parameter)" if name in extra_grads else " (ignored)"))

    worst = sorted(rows, key=lambda r: -r[2])[:args.worst]
    print("worst: " + ", ".join("%s %.3e" % (r[0], r[2]) for r in worst))
    failed = bool(failures or extra_grads)
    n_fail = len(failures) + len(extra_grads)
    if failed:
        print("FAIL: %d of %d tensors disagree (tol %.1e)" % (n_fail, len(rows), args.tol))
    else:
        print("PASS: %d tensors within %.1e (worst %s %.3e)" % (len(rows), args.tol, worst[0][0], worst[0][2]))
    if args.summary:
        with open(args.summary, "a") as f:
            f.write("%s\t%d\t%d\t%s\t%.3e\t%s\n" % (args.label or args.state, len(rows), n_fail, worst[0][0],
                                                     worst[0][2], "FAIL" if failed else "PASS"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
