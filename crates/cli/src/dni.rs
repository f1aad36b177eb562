//! `neuropil dni`: the cortico-cerebellar DNI experiment (line drawing): truncated
//! BPTT with and without a cerebellar module, the truncation sweep and lesions,
//! several seeds; writes curves (CSV), a table (Markdown) and plots (PNG).

use anyhow::{bail, Context, Result};
use neuropil_dni::lstm::Cortex;
use neuropil_dni::task::{Sequence, CLASSES, STEPS};
use neuropil_dni::{draw, train_model, Config, Epoch, Lesion, LesionKind};
use neuropil_output::chart::{line_chart, Series};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Arguments of `neuropil dni`.
#[derive(clap::Args, Debug)]
pub struct DniArgs {
    /// Seeds per arm.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Training epochs (the reference trains 100).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Truncation windows K to sweep (10 = the whole sequence: full BPTT).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5,10")]
    pub truncations: Vec<usize>,
    /// Granule layer sizes of the cerebellar module.
    #[arg(long, value_delimiter = ',', default_value = "400,400")]
    pub granule: Vec<usize>,
    /// Epoch from which the lesion arms (at K = 1) are lesioned (default: a quarter of the epochs).
    #[arg(long)]
    pub lesion_epoch: Option<usize>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "out/dni")]
    pub out: PathBuf,
    /// Instead: the spiking demonstration. Run this experiment (its first
    /// [[cerebellum]] module) intact, without module, without module and delay,
    /// and with both lesions at half time, for each seed; curves per target period.
    #[arg(long, value_name = "EXPERIMENT")]
    pub spiking: Option<PathBuf>,
}

/// One arm of the experiment.
#[derive(Clone)]
struct Arm {
    name: String,
    truncation: usize,
    cerebellum: bool,
    lesion: Option<Lesion>,
}

fn arms(args: &DniArgs, lesion_epoch: usize) -> Vec<Arm> {
    let mut arms = Vec::new();
    for &k in &args.truncations {
        let full = k >= neuropil_dni::task::STEPS;
        arms.push(Arm {
            name: if full { "full BPTT".into() } else { format!("K={k} cortex only") },
            truncation: k,
            cerebellum: false,
            lesion: None,
        });
        if !full {
            arms.push(Arm { name: format!("K={k} + cerebellum"), truncation: k, cerebellum: true, lesion: None });
        }
    }
    if args.truncations.contains(&1) {
        for (kind, what) in [(LesionKind::Cerebellum, "cerebellar lesion"), (LesionKind::InferiorOlive, "olive lesion")]
        {
            arms.push(Arm {
                name: format!("K=1 + cerebellum, {what} @{lesion_epoch}"),
                truncation: 1,
                cerebellum: true,
                lesion: Some(Lesion { kind, epoch: lesion_epoch }),
            });
        }
    }
    arms
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// The spiking demonstration (`--spiking FILE`).
fn spiking(args: &DniArgs, file: &std::path::Path) -> Result<()> {
    let base =
        neuropil_runtime::prepare(&neuropil_runtime::RunRequest { experiment: file.into(), ..Default::default() })?;
    let Some(module) = base.compiled.network.cerebella.first().cloned() else {
        bail!("{}: the experiment has no [[cerebellum]] module", file.display());
    };
    let duration = base.experiment.run.duration_ms;
    let half = format!("{}", duration / 2.0);
    let variants: Vec<(String, Vec<String>)> = vec![
        ("module".into(), vec![]),
        ("no module (late feedback)".into(), vec!["cerebellum[0].remove_at_ms=0".into()]),
        (
            "no module, no delay (upper bound)".into(),
            vec!["cerebellum[0].remove_at_ms=0".into(), "cerebellum[0].feedback_delay_ms=0".into()],
        ),
        (format!("cerebellar lesion @{half} ms"), vec![format!("cerebellum[0].remove_at_ms={half}")]),
        (format!("olive lesion @{half} ms"), vec![format!("cerebellum[0].freeze_at_ms={half}")]),
    ];
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let period = module.target_period_ms;
    let trials = (duration / period).floor().max(1.0) as usize;
    let mut csv = String::from("variant,seed,trial,mse\n");
    let mut table = String::from(
        "| variant | task MSE, first trial | task MSE, last tenth (mean ± sd) | prediction–feedback correlation |\n|---|---|---|---|\n",
    );
    let mut series = Vec::new();
    for (name, set) in &variants {
        let mut curves: Vec<Vec<f64>> = Vec::new();
        let (mut lasts, mut firsts, mut corrs) = (Vec::new(), Vec::new(), Vec::new());
        for seed in 1..=args.seeds {
            let mut set = set.clone();
            set.push(format!("run.seed={seed}"));
            let req =
                neuropil_runtime::RunRequest { experiment: file.into(), set, threads: args.threads, shards: None };
            let p = neuropil_runtime::prepare(&req)?;
            let (out, summary, _) =
                neuropil_runtime::simulate(&p, false, None, None, &std::sync::atomic::AtomicBool::new(false))?;
            let dt = p.compiled.network.dt_ms;
            let mut per = vec![(0.0, 0usize); trials];
            for m in out.cerebellum.iter().filter(|m| m.module == 0) {
                let k = ((m.step as f64 * dt / period) as usize).min(trials - 1);
                per[k].0 += m.error * m.error;
                per[k].1 += 1;
            }
            let curve: Vec<f64> = per.iter().map(|&(s, n)| s / n.max(1) as f64).collect();
            for (k, v) in curve.iter().enumerate() {
                let _ = writeln!(csv, "{name},{seed},{},{v}", k + 1);
            }
            firsts.push(curve[0]);
            curves.push(curve);
            if let Some(m) = summary.cerebellum.first() {
                lasts.push(m.mse_last_tenth);
                if let Some(r) = m.prediction_correlation {
                    corrs.push(r);
                }
            }
            eprintln!("{name}, seed {seed}: last-tenth MSE {:.4}", lasts.last().copied().unwrap_or(f64::NAN));
        }
        let (lm, ls) = mean_sd(&lasts);
        let c = if corrs.is_empty() {
            "—".into()
        } else {
            let (cm, cs) = mean_sd(&corrs);
            format!("{cm:.2} ± {cs:.2}")
        };
        let _ = writeln!(table, "| {name} | {:.3} | {lm:.4} ± {ls:.4} | {c} |", mean_sd(&firsts).0);
        let points = (0..trials)
            .map(|k| ((k + 1) as f64, mean_sd(&curves.iter().map(|c| c[k]).collect::<Vec<_>>()).0))
            .collect();
        series.push(Series { name: name.clone(), points });
    }
    let stem = file.file_stem().map_or("experiment".into(), |s| s.to_string_lossy().into_owned());
    let name = |what: &str| args.out.join(format!("spiking_{stem}_{what}"));
    std::fs::write(name("curves.csv"), csv)?;
    std::fs::write(name("table.md"), &table)?;
    println!("{table}");
    line_chart(
        &format!(
            "{stem}: task MSE per {period:.0} ms trial, feedback {:.0} ms late, {} seeds",
            module.delay_steps as f64 * base.compiled.network.dt_ms,
            args.seeds
        ),
        "trial",
        "MSE",
        &series,
        &[(trials as f64 / 2.0 + 0.5, "lesions".into())],
        true,
        &name("curves.png"),
    )?;
    eprintln!("wrote {}/spiking_{stem}_{{curves.csv,table.md,curves.png}}", args.out.display());
    Ok(())
}

/// Run the experiment.
pub fn run(args: &DniArgs) -> Result<()> {
    if let Some(file) = &args.spiking {
        if args.seeds == 0 {
            bail!("--seeds must be at least 1");
        }
        return spiking(args, file);
    }
    if args.seeds == 0 || args.epochs == 0 {
        bail!("--seeds and --epochs must be at least 1");
    }
    if args.truncations.is_empty() || args.truncations.contains(&0) {
        bail!("--truncations: every window K must be at least 1 step (e.g. --truncations 1,2,3,5,10)");
    }
    if args.granule.is_empty() || args.granule.contains(&0) {
        bail!("--granule: every granule layer needs at least 1 unit (e.g. --granule 400,400)");
    }
    let lesion_epoch = args.lesion_epoch.unwrap_or((args.epochs / 4).max(1));
    let arms = arms(args, lesion_epoch);
    let jobs: Vec<(usize, u64)> = (0..arms.len()).flat_map(|a| (0..args.seeds).map(move |s| (a, s))).collect();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    eprintln!("{} arms × {} seeds, {} epochs, {threads} threads", arms.len(), args.seeds, args.epochs);
    let results: Mutex<Vec<Option<Vec<Epoch>>>> = Mutex::new(vec![None; jobs.len()]);
    // The first seed's trained cortex of every arm without a lesion, for drawings.
    let cortices: Mutex<Vec<Option<Cortex>>> = Mutex::new(vec![None; arms.len()]);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()) {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(a, seed)) = jobs.get(j) else { break };
                let arm = &arms[a];
                let cfg = Config {
                    truncation: arm.truncation,
                    cerebellum: arm.cerebellum.then(|| args.granule.clone()),
                    lesion: arm.lesion,
                    epochs: args.epochs,
                    ..Config::reference(seed + 1)
                };
                let (history, cortex) = train_model(&cfg, &mut |_| {});
                if seed == 0 && arm.lesion.is_none() {
                    cortices.lock().unwrap_or_else(|e| e.into_inner())[a] = Some(cortex);
                }
                let last = history.last().copied();
                results.lock().unwrap_or_else(|e| e.into_inner())[j] = Some(history);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                let el = start.elapsed().as_secs_f64();
                eprintln!(
                    "[{n}/{}] {} seed {}: validation MSE {:.3} ({:.0} s elapsed, ~{:.0} s left)",
                    jobs.len(),
                    arm.name,
                    seed + 1,
                    last.map_or(f64::NAN, |e| e.validation_mse),
                    el,
                    el / n as f64 * (jobs.len() - n) as f64
                );
            });
        }
    });
    let results: Vec<Vec<Epoch>> =
        results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(Option::unwrap_or_default).collect();

    // Curves.
    let mut csv =
        String::from("arm,truncation,cerebellum,seed,epoch,train_mse,validation_mse,correlation,module_mse\n");
    for (j, &(a, seed)) in jobs.iter().enumerate() {
        for e in &results[j] {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{}",
                arms[a].name,
                arms[a].truncation,
                arms[a].cerebellum,
                seed + 1,
                e.epoch,
                e.train_mse,
                e.validation_mse,
                e.correlation,
                e.module_mse
            );
        }
    }
    std::fs::write(args.out.join("dni_curves.csv"), csv)?;

    // Per arm: mean curve, final statistics.
    let per_arm = |a: usize| -> Vec<&Vec<Epoch>> {
        jobs.iter().enumerate().filter(|(_, &(x, _))| x == a).map(|(j, _)| &results[j]).collect()
    };
    let mean_curve = |a: usize, f: &dyn Fn(&Epoch) -> f64| -> Vec<(f64, f64)> {
        let runs = per_arm(a);
        (0..=args.epochs)
            .map(|e| {
                let v: Vec<f64> = runs.iter().filter_map(|r| r.get(e)).map(f).collect();
                (e as f64, mean_sd(&v).0)
            })
            .collect()
    };
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| arm | final validation MSE (mean ± sd) | min – max over seeds | best epoch (mean curve) | prediction–truth correlation: peak of the mean curve (epoch) | at the end |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|");
    for (a, arm) in arms.iter().enumerate() {
        let finals: Vec<f64> = per_arm(a).iter().filter_map(|r| r.last()).map(|e| e.validation_mse).collect();
        let corr: Vec<f64> =
            per_arm(a).iter().filter_map(|r| r.last()).map(|e| e.correlation).filter(|c| c.is_finite()).collect();
        let (m, sd) = mean_sd(&finals);
        let lo = finals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let curve = mean_curve(a, &|e| e.validation_mse);
        let best = curve.iter().copied().fold((0.0, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
        let (c, peak) = if corr.is_empty() {
            ("—".to_string(), "—".to_string())
        } else {
            let (cm, cs) = mean_sd(&corr);
            let curve = mean_curve(a, &|e| e.correlation);
            let p = curve.iter().copied().filter(|p| p.1.is_finite()).fold((0.0, f64::NEG_INFINITY), |b, p| {
                if p.1 > b.1 {
                    p
                } else {
                    b
                }
            });
            (format!("{cm:.2} ± {cs:.2}"), format!("{:.2} ({:.0})", p.1, p.0))
        };
        let _ = writeln!(
            table,
            "| {} | {m:.3} ± {sd:.3} | {lo:.3} – {hi:.3} | {:.0} ({:.3}) | {peak} | {c} |",
            arm.name, best.0, best.1
        );
    }
    std::fs::write(args.out.join("dni_table.md"), &table)?;
    println!("{table}");

    // Plots.
    let pick = |pred: &dyn Fn(&Arm) -> bool| -> Vec<usize> { (0..arms.len()).filter(|&a| pred(&arms[a])).collect() };
    let k1 = pick(&|a| (a.truncation == 1 || a.truncation >= neuropil_dni::task::STEPS) && a.lesion.is_none());
    let series = |ids: &[usize], f: &dyn Fn(&Epoch) -> f64| -> Vec<Series> {
        ids.iter().map(|&a| Series { name: arms[a].name.clone(), points: mean_curve(a, f) }).collect()
    };
    let title = format!("line drawing: validation MSE, {} seeds", args.seeds);
    line_chart(
        &title,
        "epoch",
        "validation MSE",
        &series(&k1, &|e| e.validation_mse),
        &[],
        true,
        &args.out.join("dni_k1.png"),
    )?;
    let lesions = pick(&|a| a.truncation == 1);
    line_chart(
        &format!("K = 1: lesions at epoch {lesion_epoch}, {} seeds", args.seeds),
        "epoch",
        "validation MSE",
        &series(&lesions, &|e| e.validation_mse),
        &[(lesion_epoch as f64, "lesion".into())],
        true,
        &args.out.join("dni_lesions.png"),
    )?;
    let with = pick(&|a| a.cerebellum && a.lesion.is_none());
    line_chart(
        "predicted vs true gradient: correlation",
        "epoch",
        "Pearson r",
        &series(&with, &|e| e.correlation),
        &[],
        false,
        &args.out.join("dni_correlation.png"),
    )?;
    let sweep = |cb: bool| -> Series {
        let points = args
            .truncations
            .iter()
            .filter_map(|&k| {
                let a = (0..arms.len()).find(|&a| {
                    arms[a].truncation == k
                        && arms[a].lesion.is_none()
                        && (arms[a].cerebellum == cb || k >= neuropil_dni::task::STEPS)
                })?;
                let finals: Vec<f64> = per_arm(a).iter().filter_map(|r| r.last()).map(|e| e.validation_mse).collect();
                Some((k as f64, mean_sd(&finals).0))
            })
            .collect();
        Series { name: if cb { "with cerebellum".into() } else { "cortex only".into() }, points }
    };
    line_chart(
        "final validation MSE against truncation K",
        "K (steps; 10 = full BPTT)",
        "validation MSE",
        &[sweep(false), sweep(true)],
        &[],
        true,
        &args.out.join("dni_sweep.png"),
    )?;
    // What the cortex draws (seed 1, validation inputs: one per class).
    let cortices = cortices.into_inner().unwrap_or_else(|e| e.into_inner());
    for &a in &k1 {
        let Some(cortex) = &cortices[a] else { continue };
        let gap = (f64::NAN, f64::NAN);
        let mut target = Vec::new();
        let mut drawn = Vec::new();
        for class in 0..CLASSES {
            let seq = Sequence { class };
            target.push((0.0, 0.0));
            target.extend((0..STEPS).map(|t| seq.target(t)).map(|p| (p[0] as f64, p[1] as f64)));
            target.push(gap);
            drawn.push((0.0, 0.0));
            drawn.extend(draw(cortex, class).iter().map(|p| (p[0] as f64, p[1] as f64)));
            drawn.push(gap);
        }
        let slug: String =
            arms[a].name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        line_chart(
            &format!("what the cortex draws after {} epochs: {} (seed 1)", args.epochs, arms[a].name),
            "x",
            "y",
            &[Series { name: "target lines".into(), points: target }, Series { name: "drawn".into(), points: drawn }],
            &[],
            false,
            &args.out.join(format!("dni_drawing_{slug}.png")),
        )?;
    }
    eprintln!(
        "wrote {}/dni_{{curves.csv,table.md,k1.png,lesions.png,correlation.png,sweep.png,drawing_*.png}}",
        args.out.display()
    );
    Ok(())
}
