//! Distributions in experiment files: a plain number (constant) or a table
//! `{ dist = "normal", mean = 1.5, std = 0.75, min = 0.05 }`.

use crate::error::Errors;
use neuropil_sim::{Bound, Dist};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// A distribution as written in a file (the proto's `Distribution`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistFields {
    /// `constant`, `uniform`, `normal` or `lognormal`.
    pub dist: String,
    /// constant: the value.
    #[serde(default)]
    pub value: Option<f64>,
    /// uniform: lower end.
    #[serde(default)]
    pub low: Option<f64>,
    /// uniform: upper end.
    #[serde(default)]
    pub high: Option<f64>,
    /// normal: mean.
    #[serde(default)]
    pub mean: Option<f64>,
    /// normal: standard deviation.
    #[serde(default)]
    pub std: Option<f64>,
    /// lognormal: mean of the underlying normal.
    #[serde(default)]
    pub mu: Option<f64>,
    /// lognormal: standard deviation of the underlying normal.
    #[serde(default)]
    pub sigma: Option<f64>,
    /// normal, lognormal: lower bound.
    #[serde(default)]
    pub min: Option<f64>,
    /// normal, lognormal: upper bound.
    #[serde(default)]
    pub max: Option<f64>,
    /// `redraw` (default: truncate) or `clip` (clamp) for values outside [min, max].
    #[serde(default)]
    pub bound: Option<String>,
}

/// A number or a distribution table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct DistSpec(pub DistFields);

impl DistSpec {
    /// A constant.
    pub fn constant(v: f64) -> Self {
        DistSpec(DistFields { dist: "constant".into(), value: Some(v), ..Default::default() })
    }

    /// The kernel distribution, or errors under `path`.
    pub(crate) fn compile(&self, path: &str, errs: &mut Errors) -> Option<Dist> {
        let f = &self.0;
        let n0 = errs.0.len();
        let need = |name: &str, v: Option<f64>, errs: &mut Errors| -> f64 {
            match v {
                Some(x) => {
                    errs.finite(format!("{path}.{name}"), x);
                    x
                }
                None => {
                    errs.add(format!("{path}.{name}"), format!("required for dist = \"{}\"", f.dist));
                    0.0
                }
            }
        };
        let allowed: &[&str] = match f.dist.as_str() {
            "constant" => &["value"],
            "uniform" => &["low", "high"],
            "normal" => &["mean", "std", "min", "max", "bound"],
            "lognormal" => &["mu", "sigma", "min", "max", "bound"],
            other => {
                errs.add(
                    format!("{path}.dist"),
                    format!("unknown distribution \"{other}\"; use constant, uniform, normal or lognormal"),
                );
                return None;
            }
        };
        let present = [
            ("value", f.value.is_some()),
            ("low", f.low.is_some()),
            ("high", f.high.is_some()),
            ("mean", f.mean.is_some()),
            ("std", f.std.is_some()),
            ("mu", f.mu.is_some()),
            ("sigma", f.sigma.is_some()),
            ("min", f.min.is_some()),
            ("max", f.max.is_some()),
            ("bound", f.bound.is_some()),
        ];
        for (name, is) in present {
            if is && !allowed.contains(&name) {
                errs.add(
                    format!("{path}.{name}"),
                    format!("not a parameter of dist = \"{}\" (it takes {})", f.dist, allowed.join(", ")),
                );
            }
        }
        let bounds = |errs: &mut Errors| -> (f64, f64, Bound) {
            let min = f.min.unwrap_or(f64::NEG_INFINITY);
            let max = f.max.unwrap_or(f64::INFINITY);
            if min.is_nan() || max.is_nan() || min > max {
                errs.add(format!("{path}.min"), format!("must be a number <= max, got min {min}, max {max}"));
            }
            let bound = match f.bound.as_deref() {
                None | Some("redraw") => Bound::Redraw,
                Some("clip") => Bound::Clip,
                Some(other) => {
                    errs.add(format!("{path}.bound"), format!("unknown bound \"{other}\"; use redraw or clip"));
                    Bound::Redraw
                }
            };
            (min, max, bound)
        };
        let d = match f.dist.as_str() {
            "constant" => Dist::Constant(need("value", f.value, errs)),
            "uniform" => {
                let (low, high) = (need("low", f.low, errs), need("high", f.high, errs));
                if low > high {
                    errs.add(format!("{path}.low"), format!("must be <= high ({high}), got {low}"));
                }
                Dist::Uniform { low, high }
            }
            "normal" => {
                let (mean, std) = (need("mean", f.mean, errs), need("std", f.std, errs));
                if std < 0.0 {
                    errs.add(format!("{path}.std"), format!("must be >= 0, got {std}"));
                }
                let (min, max, bound) = bounds(errs);
                Dist::Normal { mean, std, min, max, bound }
            }
            _ => {
                let (mu, sigma) = (need("mu", f.mu, errs), need("sigma", f.sigma, errs));
                if sigma < 0.0 {
                    errs.add(format!("{path}.sigma"), format!("must be >= 0, got {sigma}"));
                }
                let (min, max, bound) = bounds(errs);
                Dist::Lognormal { mu, sigma, min, max, bound }
            }
        };
        if errs.0.len() > n0 {
            return None;
        }
        if matches!(f.bound.as_deref(), None | Some("redraw")) && d.acceptance() < 1e-3 {
            errs.add(
                format!("{path}.min"),
                format!(
                    "[min, max] keeps only {:.2e} of the distribution; widen it or use bound = \"clip\"",
                    d.acceptance()
                ),
            );
            return None;
        }
        Some(d)
    }
}

impl<'de> Deserialize<'de> for DistSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DistSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a table like { dist = \"normal\", mean = 1.0, std = 0.1 }")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DistSpec, E> {
                Ok(DistSpec::constant(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DistSpec, E> {
                Ok(DistSpec::constant(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DistSpec, E> {
                Ok(DistSpec::constant(v as f64))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DistSpec, A::Error> {
                DistFields::deserialize(de::value::MapAccessDeserializer::new(map)).map(DistSpec)
            }
        }
        deserializer.deserialize_any(V)
    }
}
