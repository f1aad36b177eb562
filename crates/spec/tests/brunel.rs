//! The Brunel (2000) network against its mean-field theory: in the asynchronous
//! irregular regime the population rate solves the self-consistent Siegert
//! equation (Brunel 2000, eqs. 21–22), which we compute here independently.

mod common;
use common::*;

/// erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// Stationary rate (Hz) of an LIF neuron with Gaussian white-noise input of mean
/// `mu` and std `sigma` (mV): 1 / (t_ref + tau sqrt(pi) ∫ e^{u²}(1 + erf u) du).
fn siegert(mu: f64, sigma: f64, tau_s: f64, t_ref_s: f64, theta: f64, v_r: f64) -> f64 {
    let (a, b) = ((v_r - mu) / sigma, (theta - mu) / sigma);
    let n = 20_000;
    let h = (b - a) / n as f64;
    let f = |u: f64| (u * u).exp() * (1.0 + erf(u));
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h);
    }
    1.0 / (t_ref_s + tau_s * std::f64::consts::PI.sqrt() * s * h / 3.0)
}

#[test]
fn asynchronous_irregular_rate_matches_mean_field_theory() {
    // Brunel model A with g = 5, eta = 2 (examples/brunel.toml).
    let (j, c_e, g, gamma, tau, t_ref, theta, v_r) = (0.1, 1000.0, 5.0, 0.25, 0.02, 0.002, 20.0, 10.0);
    let nu_ext = 2.0 * theta / (j * c_e * tau);
    let mut nu: f64 = 10.0;
    for _ in 0..500 {
        let mu = j * c_e * tau * (nu_ext + nu * (1.0 - g * gamma));
        let sigma = (j * j * c_e * tau * (nu_ext + nu * (1.0 + g * g * gamma))).sqrt();
        nu = 0.9 * nu + 0.1 * siegert(mu, sigma, tau, t_ref, theta, v_r);
    }
    assert!((nu - 37.95).abs() < 0.1, "mean-field rate {nu}");

    let c = compile_example("brunel.toml", &["run.duration_ms=600", "run.transient_ms=100"]);
    let out = run(&c, 2, 2);
    let secs = (c.steps - c.transient_steps) as f64 * c.network.dt_ms * 1e-3;
    for (p, pop) in c.network.populations.iter().enumerate() {
        let rate = out.counted_spikes[p] as f64 / (pop.size as f64 * secs);
        assert!((rate - nu).abs() / nu < 0.03, "{}: {rate:.2} Hz vs mean-field {nu:.2} Hz", pop.name);
    }
}
