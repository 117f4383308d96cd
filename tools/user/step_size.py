"""Step sizes for ALS and CAS: CAS bounds, eta and beta of a setting, and n_sigma extrapolation.

    python tools/user/step_size.py --n_sigma 1 5 --step_size 5.6e-6
    python tools/user/step_size.py --n_sigma 1 5 15 --tuned_step_size 5.6e-6
    python tools/user/step_size.py --gin_file gin_configs/toy2d_swissroll.gin --n_sigma 10 --step_size 2e-5

The schedule is NoiseSchedule's (CIFAR-10's 50 -> 0.01 in 232 levels by default), taken from gin files and
bindings if given, with --sigma_begin/--sigma_end/--num_levels/--spacing overriding them.
CAS visits the refined grid of (L - 1) n_sigma + 1 levels and needs
sigma_L^2 (1 - gamma) < eps < sigma_L^2 (1 + gamma) on it; eta = eps / sigma_L^2 and
beta = sqrt(1 - ((1 - eta) / gamma)^2) is its noise coefficient. ALS takes n_sigma steps per level.

Extrapolation of a step size tuned at --tuned_n_sigma (usually 1) to each --n_sigma (asm_tf.noise_levels.schedule):
ALS keeps eps * n_sigma fixed; CAS keeps (1 - eta)^n_sigma fixed. The CAS rule is a RECONSTRUCTION of the
paper's Appendix B from the authors' published step sizes (5.6e-6 -> 1.146e-6 at n_sigma = 5 for CIFAR-10,
where they used 1.1e-6), not checked against the paper's text.

Exits with status 1 when --step_size is outside the CAS bounds of some n_sigma.
"""

import argparse
import sys

import asm_tf

asm_tf.import_tensorflow_quietly()  # asm_tf.noise_levels.schedule computes the levels with TensorFlow

from asm_tf import configuration  # noqa: E402
from asm_tf.noise_levels import schedule as noise_schedule  # noqa: E402


def add_schedule_flags(parser):
    """Flags of a NoiseSchedule; unset ones come from gin or the NoiseSchedule defaults."""
    parser.add_argument("--gin_file", action="append", default=[], help="a run's gin file (repeatable)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="a gin binding (repeatable)")
    parser.add_argument("--sigma_begin", type=float, help="largest noise level sigma_1")
    parser.add_argument("--sigma_end", type=float, help="smallest noise level sigma_L")
    parser.add_argument("--num_levels", type=int, help="number of training noise levels L")
    parser.add_argument("--spacing", choices=noise_schedule.LADDER_SPACINGS, help="geometric (default) or linear")


def schedule_from_flags(args):
    configuration.parse(args.gin_file, args.gin_bindings)
    given = {name: getattr(args, name) for name in ("sigma_begin", "sigma_end", "num_levels", "spacing")
             if getattr(args, name) is not None}
    return noise_schedule.NoiseSchedule(**given)


def describe(report):
    line = f"{report.sampler.upper()} n_sigma={report.n_sigma:<3d} levels={report.levels:<6d} gamma={report.ratio:.6f}"
    if report.bounds is not None:
        line += f"  CAS bounds ({report.bounds[0]:.4g}, {report.bounds[1]:.4g})"
    if report.step_size is not None:
        line += f"  eps={report.step_size:.4g} eta={report.eta:.4g}"
        if report.beta is not None:
            low, high = report.beta
            line += f" beta={low:.4f}" if abs(high - low) < 1e-9 else f" beta in [{low:.4f}, {high:.4f}]"
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schedule_flags(parser)
    parser.add_argument("--sampler", choices=("cas", "als"), default="cas", help="default cas")
    parser.add_argument("--n_sigma", type=int, nargs="+", default=[1], help="one or more n_sigma (default 1)")
    parser.add_argument("--step_size", type=float, help="a step size eps to check and describe")
    parser.add_argument("--tuned_step_size", type=float, help="a step size tuned at --tuned_n_sigma to extrapolate")
    parser.add_argument("--tuned_n_sigma", type=int, default=1, help="n_sigma the tuned step size is for (default 1)")
    args = parser.parse_args(argv)
    try:
        schedule = schedule_from_flags(args)
        reports = [noise_schedule.step_size_report(schedule, args.sampler, n, args.step_size) for n in args.n_sigma]
        extrapolated = [noise_schedule.extrapolate_step_size(args.tuned_step_size, sampler=args.sampler,
                                                     n_from=args.tuned_n_sigma, n_to=n, sigma_end=schedule.sigma_end)
                        for n in args.n_sigma] if args.tuned_step_size is not None else None
    except ValueError as error:
        parser.error(str(error))
    print(f"schedule: {schedule.spacing} {schedule.sigma_begin:g} -> {schedule.sigma_end:g}, "
          f"{schedule.num_levels} levels")
    failed = False
    for index, report in enumerate(reports):
        print(describe(report))
        if extrapolated is not None:
            rule = "(1 - eta)^n fixed, reconstructed Appendix B" if args.sampler == "cas" else "eps * n fixed"
            print(f"    extrapolated from eps={args.tuned_step_size:.4g} at n_sigma={args.tuned_n_sigma}: "
                  f"{extrapolated[index]:.4g}  [{rule}]")
        if report.error is not None:
            print(f"    INVALID: {report.error}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
