import dataclasses
import logging

import gin
import numpy as np
import pytest

from asm_tf import sampling
from asm_tf.noise_levels import formulas
from asm_tf.noise_levels import schedule as noise_schedule

SCHEDULE = noise_schedule.NoiseSchedule(sigma_begin=8.5, sigma_end=0.02, num_levels=40)
RUN = sampling.SamplerSettings(sampler="cas", step_size=1.5e-4)


def test_a_subsampled_ladder_keeps_its_ends_and_takes_only_trained_levels():
    ladder = SCHEDULE.sigmas()
    picked = formulas.subsampled(ladder, 10).numpy()
    assert len(picked) == 10 and picked[0] == ladder[0] and picked[-1] == ladder[-1]
    assert set(picked) <= set(ladder) and np.all(np.diff(picked) < 0)
    np.testing.assert_array_equal(formulas.subsampled(ladder, 40).numpy(), ladder)


def test_the_rho_schedule_has_exact_ends_and_is_linear_for_rho_one():
    got = formulas.rho_spaced(80.0, 0.002, 18, 7.0).numpy()
    assert got[0] == 80.0 and got[-1] == 0.002 and np.all(np.diff(got) < 0)
    # EDM's sigma_i for i = 1 of 18 at rho 7 (Karras et al. 2022, eq. 5).
    assert got[1] == pytest.approx((80 ** (1 / 7) + (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 17) ** 7)
    np.testing.assert_allclose(formulas.rho_spaced(5.0, 1.0, 5, 1.0).numpy(), [5, 4, 3, 2, 1])


def test_coarse_cas_needs_a_step_size_within_the_bounds_of_its_own_grid():
    coarse = sampling.SamplerSettings(sampler="cas", num_steps=10, step_size=RUN.step_size)
    RUN.validate(SCHEDULE)
    with pytest.raises(ValueError, match="outside the CAS bounds for this grid of 10 levels"):
        coarse.validate(SCHEDULE)
    carried = sampling.carried_step_size(RUN, coarse, SCHEDULE)
    sampling.SamplerSettings(sampler="cas", num_steps=10, step_size=carried).validate(SCHEDULE)
    # Contraction per trained interval kept: (1 - eta')^(1 / 39 * 9) = (1 - eta).
    eta, carried_eta = RUN.step_size / 0.02**2, carried / 0.02**2
    assert (1 - carried_eta) ** (9 / 39) == pytest.approx(1 - eta)


def test_refining_with_n_sigma_and_coarsening_with_num_steps_carry_the_step_size_alike():
    refined = sampling.SamplerSettings(sampler="cas", n_sigma=3, step_size=RUN.step_size)
    expected = noise_schedule.extrapolate_step_size(RUN.step_size, sampler="cas", n_from=1, n_to=3, sigma_end=0.02)
    assert sampling.carried_step_size(RUN, refined, SCHEDULE) == pytest.approx(expected)


@pytest.mark.parametrize("sampler", ["als", "cas"])
def test_a_carried_step_size_keeps_eta_on_each_settings_own_last_level(sampler):
    """ALS and CAS step with eta = eps / sigma^2 of the last level they visit: at the same density (39 steps per
    39 trained intervals), a carried step size keeps eta whether that level is sigma_end or a higher sigma_min."""
    run = sampling.SamplerSettings(sampler=sampler, step_size=1.5e-4)
    raised = sampling.SamplerSettings(sampler=sampler, num_steps=40, spacing="rho", sigma_min=0.03)
    carried = sampling.carried_step_size(run, raised, SCHEDULE)
    assert carried / 0.03**2 == pytest.approx(1.5e-4 / 0.02**2)
    back = sampling.carried_step_size(dataclasses.replace(raised, step_size=carried), run, SCHEDULE)
    assert back == pytest.approx(1.5e-4)


@pytest.mark.parametrize("settings, message", [
    ({"sampler": "euler", "num_steps": 41}, "exceeds the 40 trained levels"),
    ({"sampler": "euler", "num_steps": 5, "spacing": "rho", "sigma_max": 80.0}, r"80 outside the trained range"),
    ({"sampler": "heun", "num_steps": 5, "spacing": "rho", "sigma_min": 0.002}, r"0.002 outside the trained range"),
])
def test_levels_the_network_was_not_trained_on_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        sampling.SamplerSettings(**settings).validate(SCHEDULE)


@pytest.mark.parametrize("settings, message", [
    ({"sampler": "euler", "num_steps": 1}, "num_steps must be at least 2"),
    ({"sampler": "heun", "spacing": "rho"}, "spacing 'rho' needs num_steps"),
    ({"sampler": "cas", "num_steps": 5, "n_sigma": 2}, "either num_steps"),
    ({"sampler": "euler", "num_steps": 5, "sigma_max": 5.0}, "ends of spacing 'rho'"),
    ({"sampler": "cas", "churn": 1.0}, "churn applies"),
    ({"sampler": "heun", "num_steps": 5, "eta": 0.5}, "eta applies to the euler sampler"),
    ({"sampler": "euler", "num_steps": 5, "eta": 1.5}, "0 <= eta <= 1"),
    ({"sampler": "ddim"}, "sampler must be one of"),
    ({"sampler": "cas", "step_size": 1e-4, "cas_step_size": 2e-4}, "cas_step_size 0.0002 differs from step_size"),
    ({"sampler": "cas", "als_step_size": -1.0}, "als_step_size must be positive"),
])
def test_bad_settings_are_refused_with_a_message(settings, message):
    with pytest.raises(ValueError, match=message):
        sampling.SamplerSettings(**settings)


def test_network_calls_per_image():
    calls = {name: sampling.SamplerSettings(**kw).network_calls(SCHEDULE) for name, kw in {
        "als": {"sampler": "als", "n_sigma": 2}, "cas": {"sampler": "cas"},
        "coarse cas": {"sampler": "cas", "num_steps": 10}, "euler": {"sampler": "euler", "num_steps": 10},
        "heun": {"sampler": "heun", "num_steps": 10}}.items()}
    assert calls == {"als": 80, "cas": 40, "coarse cas": 10, "euler": 10, "heun": 19}


def test_serving_runs_an_ode_run_as_cas_on_its_levels():
    settings = sampling.SamplerSettings(sampler="euler", num_steps=20, eta=0.5, step_size=RUN.step_size).as_cas()
    assert (settings.sampler, settings.eta, settings.num_steps) == ("cas", 0.0, 20)
    assert settings.network_calls(SCHEDULE) == 20


def test_a_sampler_variant_reads_its_fields_and_takes_the_defaults_for_the_others():
    from asm_tf.cli import common

    run = sampling.SamplerSettings(sampler="euler", num_steps=5, spacing="rho", eta=0.5, step_size=1.5e-4)
    coarse = common.parse_sampler_variant("cas:num_steps=10,step_size=1.5e-4", run, SCHEDULE)
    assert (coarse.sampler, coarse.num_steps, coarse.spacing, coarse.eta) == ("cas", 10, "ladder", 0.0)
    assert coarse.step_size == pytest.approx(sampling.carried_step_size(RUN, coarse, SCHEDULE))
    heun = common.parse_sampler_variant("heun:num_steps=6,churn=0.5,rho=3", run, SCHEDULE)
    assert (heun.num_steps, heun.spacing, heun.churn, heun.rho, heun.eta) == (6, "ladder", 0.5, 3.0, 0.0)
    for text, message in (("heun:steps=5", "not FIELD=VALUE"), ("heun:num_steps=x", "not a number"),
                          ("cas:num_steps=50", "exceeds the 40 trained levels")):
        with pytest.raises(common.UserError, match=message):
            common.parse_sampler_variant(text, run, SCHEDULE)


@pytest.mark.parametrize("sampler", ["als", "cas"])
def test_a_sampler_variant_carries_the_run_step_size_from_the_run_density(sampler):
    from asm_tf.cli import common

    tuned = noise_schedule.extrapolate_step_size(1.5e-4, sampler=sampler, n_from=1, n_to=5, sigma_end=0.02)
    run = sampling.SamplerSettings(sampler=sampler, n_sigma=5, step_size=tuned)
    assert common.parse_sampler_variant(f"{sampler}:n_sigma=5", run, SCHEDULE).step_size == pytest.approx(tuned)
    one = common.parse_sampler_variant(sampler, run, SCHEDULE)
    assert (one.n_sigma, one.step_size) == (1, pytest.approx(1.5e-4))


def test_switching_sampler_takes_that_samplers_own_step_size(caplog):
    """cifar10_unet.gin: ALS with n_sigma 5 at the paper's 4e-6; CAS's 1.05e-6 (the paper's CAS n_sigma 5) serves."""
    from asm_tf.cli import common

    run = sampling.SamplerSettings(sampler="als", n_sigma=5, step_size=4e-6, cas_step_size=1.05e-6)
    with caplog.at_level(logging.WARNING):
        served = run.as_cas()
        assert (served.sampler, served.n_sigma, served.step_size) == ("cas", 5, 1.05e-6)
        assert served.with_sampler("als") == run
        assert run.override(sampler="cas") == served
        assert common.parse_sampler_variant("cas:n_sigma=5", run, SCHEDULE).step_size == pytest.approx(1.05e-6)
    assert not caplog.records


def test_a_switch_without_the_samplers_own_step_size_says_which_rule_chose_it(caplog):
    run = sampling.SamplerSettings(sampler="als", n_sigma=5, step_size=4e-6)
    with caplog.at_level(logging.WARNING):
        served = run.as_cas()
    assert (served.sampler, served.step_size) == ("cas", 4e-6)
    [record] = caplog.records
    assert "CAS takes the als step size 4e-06 as is" in record.getMessage()
    assert "SamplerSettings.cas_step_size" in record.getMessage()


def test_a_sampler_variant_ignores_the_gin_bindings_of_sampler_settings():
    """A variant's unset fields are SamplerSettings' defaults even after a run's config.gin was parsed."""
    from asm_tf.cli import common

    gin.parse_config("SamplerSettings.n_sigma = 3")
    variant = common.parse_sampler_variant("cas", RUN, SCHEDULE)
    assert (variant.n_sigma, variant.step_size) == (1, pytest.approx(RUN.step_size))
