//! Embedded Runge–Kutta–Fehlberg 4(5) with GSL's standard step-size controller
//! (safety 0.9, shrink at most 5×, grow at most 5×, absolute tolerance), used by the
//! conductance-based AdEx models inside each time step, as NEST does with GSL.

/// One RKF45 step of size `h`: the fifth-order solution and the largest absolute
/// error estimate over the components.
#[inline]
fn step<const N: usize>(y: &[f64; N], h: f64, f: &impl Fn(&[f64; N]) -> [f64; N]) -> ([f64; N], f64) {
    let at = |terms: &[(f64, &[f64; N])]| -> [f64; N] {
        let mut out = *y;
        for (c, k) in terms {
            for j in 0..N {
                out[j] += c * k[j];
            }
        }
        out
    };
    let k1 = f(y);
    let k2 = f(&at(&[(h / 4.0, &k1)]));
    let k3 = f(&at(&[(h * 3.0 / 32.0, &k1), (h * 9.0 / 32.0, &k2)]));
    let k4 = f(&at(&[(h * 1932.0 / 2197.0, &k1), (h * -7200.0 / 2197.0, &k2), (h * 7296.0 / 2197.0, &k3)]));
    let k5 =
        f(&at(&[(h * 439.0 / 216.0, &k1), (h * -8.0, &k2), (h * 3680.0 / 513.0, &k3), (h * -845.0 / 4104.0, &k4)]));
    let k6 = f(&at(&[
        (h * -8.0 / 27.0, &k1),
        (h * 2.0, &k2),
        (h * -3544.0 / 2565.0, &k3),
        (h * 1859.0 / 4104.0, &k4),
        (h * -11.0 / 40.0, &k5),
    ]));
    let y5 = at(&[
        (h * 16.0 / 135.0, &k1),
        (h * 6656.0 / 12825.0, &k3),
        (h * 28561.0 / 56430.0, &k4),
        (h * -9.0 / 50.0, &k5),
        (h * 2.0 / 55.0, &k6),
    ]);
    // Difference between the fifth- and fourth-order solutions.
    let e = [1.0 / 360.0, 0.0, -128.0 / 4275.0, -2197.0 / 75240.0, 1.0 / 50.0, 2.0 / 55.0];
    let ks = [&k1, &k2, &k3, &k4, &k5, &k6];
    let mut err = 0.0f64;
    for j in 0..N {
        let mut s = 0.0;
        for (c, k) in e.iter().zip(ks.iter()) {
            s += c * k[j];
        }
        err = err.max((h * s).abs());
    }
    (y5, err)
}

/// Integrate `y` over one time step `h` in adaptive sub-steps, starting from the
/// sub-step size `hs` (updated for the next call). `deriv` sees the extra state `s`
/// (e.g. refractoriness); `after` runs after every accepted sub-step and may change
/// both (spike detection and reset).
pub(crate) fn integrate<const N: usize, S>(
    y: &mut [f64; N],
    s: &mut S,
    h: f64,
    hs: &mut f64,
    tol: f64,
    deriv: impl Fn(&S, &[f64; N]) -> [f64; N],
    mut after: impl FnMut(&mut S, &mut [f64; N]),
) {
    let mut t = 0.0;
    let mut guard = 0u32;
    while t < h {
        let mut dt = hs.min(h - t);
        let truncated = dt < *hs;
        loop {
            guard += 1;
            let (y5, err) = step(y, dt, &|v: &[f64; N]| deriv(s, v));
            let r = err / tol;
            if r > 1.1 && dt > 1e-12 && guard < 100_000 {
                dt *= (0.9 * r.powf(-0.2)).max(0.2);
                continue;
            }
            *y = y5;
            t += dt;
            if !truncated || dt < *hs {
                *hs = if r < 0.5 { dt * (0.9 * r.max(1e-10).powf(-1.0 / 6.0)).clamp(1.0, 5.0) } else { dt };
            }
            break;
        }
        after(s, y);
    }
    *hs = hs.min(h);
}
