//! `nas search`: search-space analysis (Alg. 1, Eq. 1-3), SuperNAS (Alg. 2), SparseNAS's
//! selection stage (Alg. 3) and compression stage, then the results folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use cost::report::{
    estimate_latency_svg,
    svg::{write_memory_svg, write_svg},
    table::layer_table,
};
use cost::target::Target;
use datasets::ImageSet;
use indicatif::{ProgressBar, ProgressStyle};
use pruning::schedule::Schedule;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use training::tinyformer::{Supernet, SupernetConfig, save_tinyformer};

use crate::config::{DataConfig, ImageData, SearchConfig};
use crate::cost_graph::{Limits, evaluate};
use crate::data::ImageTensors;
use crate::error::{Result, SearchError};
use crate::evolution::{mutate_candidate, mutate_supernet, parent};
use crate::progress::Progress;
use crate::space::{SmallestCost, adjust_space, analyse, budget_unreachable, sample_supernet};
use crate::sparsity::{global_sparsity, sample};
use crate::state::{
    CandidateRecord, FinalRecord, Int8Record, SearchState, SupernetRecord, write_atomic,
};
use crate::train::{Masks, PruneRun, accuracy, prune_one_shot, train_path, train_supernet};
use crate::{pareto, weights};

/// Run-time switches that are not part of the search's definition.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    pub progress: bool,
    /// Stop (state saved) after this many supernet + candidate evaluations in this call, as an
    /// interruption would; the next call resumes.
    pub stop_after: Option<usize>,
}

/// What a finished search reports.
#[derive(Debug, Clone, Serialize)]
pub struct SearchOutcome {
    pub finished: bool,
    pub out: PathBuf,
    pub final_model: Option<FinalRecord>,
    pub pareto: Vec<usize>,
}

/// Seeds of independent random streams: (search seed, stage, index).
pub(crate) fn derive(seed: u64, stage: u64, index: u64) -> u64 {
    // splitmix64 of a mix of the three, so neighbouring indices give unrelated streams.
    let mut z = seed
        .wrapping_add(stage.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A search's images (or spectrograms) as it saw them: standardized with the training
/// split's per-channel statistics.
pub struct Data {
    pub train: ImageTensors,
    pub valid: ImageTensors,
    pub test: ImageTensors,
    pub classes: usize,
    pub class_names: Vec<String>,
    /// Per-channel statistics the images are normalized with (from the training split).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

pub(crate) fn load_data(cfg: &SearchConfig) -> Result<Data> {
    load_images(&cfg.data, cfg.seed, cfg.supernet_space.dims.len())
}

/// The train / validation / test images `d` describes, subsets and split drawn from `seed`;
/// spectrograms cropped for a network of `stages` DoT stages.
pub(crate) fn load_images(d: &DataConfig, seed: u64, stages: usize) -> Result<Data> {
    let (train, test) = match &d.source {
        ImageData::FashionMnist { dir } => datasets::read_fashion_mnist(dir)?,
        ImageData::Cifar10 { dir } => datasets::read_cifar10(dir)?,
        ImageData::Speech(spec) => return load_speech(d, seed, stages, spec),
    };
    let mut train: ImageSet = match d.train_samples {
        Some(n) if n + d.valid_samples < train.len() => train.subset(n + d.valid_samples, seed),
        _ => train,
    };
    if d.valid_samples >= train.len() {
        return Err(SearchError::Search(format!(
            "data.valid_samples = {} leaves no training images (the split has {})",
            d.valid_samples,
            train.len()
        )));
    }
    let valid = train.split_off_validation(d.valid_samples, seed);
    let test = match d.test_samples {
        Some(n) if n < test.len() => test.subset(n, seed),
        _ => test,
    };
    let (mean, std) = train.channel_stats();
    Ok(Data {
        classes: train.classes.len(),
        class_names: train.classes.clone(),
        train: ImageTensors::new(&train, &mean, &std),
        valid: ImageTensors::new(&valid, &mean, &std),
        test: ImageTensors::new(&test, &mean, &std),
        mean,
        std,
    })
}

/// MFCC spectrograms as one-channel `[1, frames, coefficients]` images, standardized with the
/// training split's mean and standard deviation (one channel: one pair).
fn load_speech(
    d: &DataConfig,
    seed: u64,
    stages: usize,
    spec: &training::speech_data::DataSpec,
) -> Result<Data> {
    use training::data::SampleSource;
    let splits = spec.load(false)?;
    // Every DoT stage halves the map, so each side must be a multiple of 2^stages: the last
    // frames / coefficients beyond one are dropped (98 x 40 MFCC -> 96 x 40 for two stages).
    let m = 1usize << stages;
    let (frames, coeffs) = (
        splits.frames - splits.frames % m,
        splits.features - splits.features % m,
    );
    if frames == 0 || coeffs == 0 {
        return Err(SearchError::Search(format!(
            "speech data: {} x {} spectrograms are smaller than the {m} x {m} that {} stages need",
            splits.frames, splits.features, stages
        )));
    }
    if (frames, coeffs) != (splits.frames, splits.features) {
        tracing::info!(
            from = ?(splits.frames, splits.features),
            to = ?(frames, coeffs),
            "spectrograms cropped to a multiple of 2^stages"
        );
    }
    let read = |src: &dyn SampleSource,
                cap: Option<usize>,
                stream: u64|
     -> Result<(Vec<f32>, Vec<usize>)> {
        let mut order: Vec<usize> = (0..src.len()).collect();
        if let Some(n) = cap.filter(|&n| n < order.len()) {
            order.shuffle(&mut StdRng::seed_from_u64(derive(seed, 8, stream)));
            order.truncate(n);
        }
        let mut values = Vec::with_capacity(order.len() * frames * coeffs);
        let mut labels = Vec::with_capacity(order.len());
        for i in order {
            let (x, y) = src.sample(i, None)?;
            for row in x.chunks(splits.features).take(frames) {
                values.extend_from_slice(&row[..coeffs]);
            }
            labels.push(y);
        }
        Ok((values, labels))
    };
    let (mut train, train_labels) = read(splits.train.as_ref(), d.train_samples, 0)?;
    let (mut valid, valid_labels) = read(splits.valid.as_ref(), Some(d.valid_samples), 1)?;
    let (mut test, test_labels) = read(splits.test.as_ref(), d.test_samples, 2)?;
    if train_labels.is_empty() || valid_labels.is_empty() || test_labels.is_empty() {
        return Err(SearchError::Search(format!(
            "speech data: {} training, {} validation, {} test clips; every split needs some",
            train_labels.len(),
            valid_labels.len(),
            test_labels.len()
        )));
    }
    let n = train.len() as f64;
    let mean = train.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = train
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt().max(1e-6);
    for v in train
        .iter_mut()
        .chain(valid.iter_mut())
        .chain(test.iter_mut())
    {
        *v = ((*v as f64 - mean) / std) as f32;
    }
    let shape = [1, frames, coeffs];
    let tensors = |values, labels| ImageTensors {
        shape,
        values,
        labels,
    };
    Ok(Data {
        classes: splits.labels.len(),
        class_names: splits.labels.clone(),
        train: tensors(train, train_labels),
        valid: tensors(valid, valid_labels),
        test: tensors(test, test_labels),
        mean: vec![mean as f32],
        std: vec![std as f32],
    })
}

pub(crate) fn bar(len: usize, done: usize, msg: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64).with_message(msg.to_string());
    pb.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_position(done as u64);
    pb
}

/// Alg. 1 with the Eq. 1-3 adjustment: analyses `space` and adjusts it while the acceptance
/// probability stays under `cfg.accept`, at most `cfg.max_adjustments` times. `analyse` returns
/// (probability, evaluated, accepted) and the analysis record. Returns every analysis and the
/// space the search goes on with: the first to reach `cfg.accept`, or else the analysed space
/// with the highest probability (Eq. 1-3 narrow and re-centre the dimensions, which can also
/// lower the probability; the search should not go on with a worse space than one it saw).
pub(crate) fn analysis_rounds<S: Clone, A>(
    space: &S,
    cfg: &crate::config::AnalysisConfig,
    seed: u64,
    mut analyse: impl FnMut(&S, &mut StdRng) -> Result<((f64, usize, usize), A)>,
    adjust: impl Fn(&S, &A) -> S,
) -> Result<(Vec<A>, S)> {
    let mut space = space.clone();
    let mut analyses = Vec::new();
    let mut best = (f64::NEG_INFINITY, space.clone());
    for round in 0..=cfg.max_adjustments {
        let mut rng = StdRng::seed_from_u64(derive(seed, 1, round as u64));
        let ((probability, evaluated, accepted), a) = analyse(&space, &mut rng)?;
        tracing::info!(
            round,
            probability,
            evaluated,
            accepted,
            "search-space analysis"
        );
        let next = adjust(&space, &a);
        analyses.push(a);
        if probability > best.0 {
            best = (probability, space.clone());
        }
        if probability >= cfg.accept || round == cfg.max_adjustments {
            break;
        }
        space = next;
    }
    let (probability, chosen) = best;
    if analyses.len() > 1 {
        tracing::info!(probability, "search space chosen by the analysis");
    }
    Ok((analyses, chosen))
}

/// Counts the budget of evaluations an interrupted test run may spend.
pub(crate) struct Budget(pub(crate) Option<usize>);

impl Budget {
    pub(crate) fn spend(&mut self) -> bool {
        match &mut self.0 {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

/// Runs (or resumes) the search described by `cfg`, writing everything under `out`.
pub fn run_search(
    cfg: &SearchConfig,
    out: &Path,
    device: &Device,
    opts: &SearchOptions,
) -> Result<SearchOutcome> {
    std::fs::create_dir_all(out).map_err(|e| SearchError::io(out, e))?;
    let fresh = !out.join(crate::state::STATE_FILE).is_file();
    let mut state = SearchState::load_or_new(out, cfg)?;
    if fresh {
        // run checkpoints of an earlier search in this folder must not be resumed
        Progress::clear(&progress_dir(out))?;
    }
    let target = Target::load(&cfg.budget.target)?;
    let limits = cfg.budget.limits(&target);
    let data = load_data(cfg)?;
    let input = data.train.shape;
    tracing::info!(
        train = data.train.len(),
        valid = data.valid.len(),
        test = data.test.len(),
        "data loaded"
    );
    let mut budget = Budget(opts.stop_after);

    // Alg. 1 and the Eq. 1-3 adjustment.
    if state.space.is_none() {
        let (analyses, space) = analysis_rounds(
            &cfg.supernet_space,
            &cfg.analysis,
            cfg.seed,
            |space, rng| {
                let a = analyse(
                    space,
                    &cfg.sparse_space,
                    &cfg.analysis,
                    input,
                    data.classes,
                    &target,
                    &limits,
                    rng,
                )?;
                Ok(((a.probability, a.evaluated, a.accepted), a))
            },
            adjust_space,
        )?;
        state.analyses = analyses;
        if state.analyses.iter().all(|a| a.evaluated == 0) {
            return Err(budget_unreachable(
                "TinyFormer path",
                &target,
                &limits,
                SmallestCost::over(state.analyses.iter().map(|a| a.smallest)),
                "shrink supernet_space's dims or last_linear, allow higher sparsities, or \
                 loosen the budget",
            ));
        }
        state.space = Some(space);
        state.save(out)?;
    }
    let space = state
        .space
        .clone()
        .unwrap_or_else(|| cfg.supernet_space.clone());

    // Alg. 2: SuperNAS.
    let sn = &cfg.supernas;
    let pb = bar(
        sn.iterations,
        state.supernets.len(),
        "SuperNAS",
        opts.progress,
    );
    for i in state.supernets.len()..sn.iterations {
        if !budget.spend() {
            return Ok(unfinished(out));
        }
        let mut rng = StdRng::seed_from_u64(derive(cfg.seed, 2, i as u64));
        let scored = scored(state.supernets.iter().map(|r| r.avg_accuracy));
        let sup = match parent(&scored, &mut rng) {
            Some(p) if i >= sn.population => {
                mutate_supernet(&state.supernets[p].config, &space, &mut rng)
            }
            _ => sample_supernet(&space, input, data.classes, &mut rng),
        };
        let record = evaluate_supernet(cfg, &sup, i, &data, &target, &limits, out, device)?;
        tracing::info!(i, avg = ?record.avg_accuracy, skipped = ?record.skipped, "supernet");
        state.supernets.push(record);
        state.save(out)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let best_sup = best(&scored(state.supernets.iter().map(|r| r.avg_accuracy)))
        .ok_or_else(|| {
            SearchError::Search(format!(
                "no supernet had a sparse path within the budget ({} sampled): loosen the budget or shrink supernet_space",
                state.supernets.len()
            ))
        })?;
    let sup_cfg = state.supernets[best_sup].config.clone();
    let sup_ckpt = out.join(
        state.supernets[best_sup]
            .checkpoint
            .clone()
            .unwrap_or_default(),
    );
    let supernet = Supernet::init(&sup_cfg, 0, device)?
        .try_load_file(&sup_ckpt)
        .map_err(|e| SearchError::Search(format!("supernet {}: {e}", sup_ckpt.display())))?;

    // Alg. 3: SparseNAS selection stage.
    let sp = &cfg.sparsenas;
    let pb = bar(
        sp.iterations,
        state.candidates.len(),
        "SparseNAS",
        opts.progress,
    );
    for i in state.candidates.len()..sp.iterations {
        if !budget.spend() {
            return Ok(unfinished(out));
        }
        let mut rng = StdRng::seed_from_u64(derive(cfg.seed, 5, i as u64));
        let scored = scored(state.candidates.iter().map(|r| r.accuracy));
        let (path, sparse) = match parent(&scored, &mut rng) {
            Some(p) if i >= sp.population => {
                let c = &state.candidates[p];
                mutate_candidate(&sup_cfg, &c.path, &c.sparse, &cfg.sparse_space, &mut rng)
            }
            _ => {
                let path = sup_cfg.sample_path(&mut rng);
                let arch = sup_cfg.arch(&path)?;
                let sparse = sample(&arch, &cfg.sparse_space, &mut rng);
                (path, sparse)
            }
        };
        let arch = sup_cfg.arch(&path)?;
        let (resources, _) = evaluate(&arch, &sparse, &target, &limits)?;
        let accuracy = if resources.fits() {
            let model = supernet.extract(&sup_cfg, &path)?;
            let seed = derive(cfg.seed, 6, i as u64);
            let (model, _) = train_path(
                model,
                &arch,
                &data.train,
                &cfg.train,
                sp.train_steps,
                seed,
                None,
                Masks::default(),
                Some(&run_progress(cfg, out, format!("candidate {i}, training"))),
                device,
            )?;
            let (model, _) = train_path(
                model,
                &arch,
                &data.train,
                &cfg.train,
                sp.prune_steps,
                seed ^ 1,
                Some(PruneRun {
                    sparse: &sparse,
                    schedule: agp_schedule(sp.prune_steps, sp.prune_frequency),
                }),
                Masks::default(),
                Some(&run_progress(cfg, out, format!("candidate {i}, pruning"))),
                device,
            )?;
            Some(accuracy(
                &model,
                &data.valid,
                cfg.train.batch_size * 4,
                device,
            ))
        } else {
            tracing::info!(i, why = ?resources.violations, "candidate rejected before training");
            None
        };
        state.candidates.push(CandidateRecord {
            path,
            arch,
            sparse,
            resources,
            accuracy,
        });
        state.save(out)?;
        pb.inc(1);
    }
    pb.finish_and_clear();

    // Compression stage: AGP pruning and fine-tuning of the winner.
    if state.final_model.is_none() {
        let winner = pareto::winner(&pareto::rows(&state.candidates)).ok_or_else(|| {
            SearchError::Search(format!(
                "none of the {} SparseNAS candidates fits the budget",
                state.candidates.len()
            ))
        })?;
        let c = state.candidates[winner].clone();
        let model = supernet.extract(&sup_cfg, &c.path)?;
        let steps = sp.final_prune_steps + sp.final_finetune_steps;
        let (model, masks) = train_path(
            model,
            &c.arch,
            &data.train,
            &cfg.train,
            steps,
            derive(cfg.seed, 7, 0),
            Some(PruneRun {
                sparse: &c.sparse,
                schedule: agp_schedule(sp.final_prune_steps.max(1), sp.prune_frequency),
            }),
            Masks::default(),
            Some(&run_progress(cfg, out, "compression stage")),
            device,
        )?;
        let batch = cfg.train.batch_size * 4;
        let w = weights::weights(&model, &c.arch);
        let realized_sparsity = masks
            .layers
            .keys()
            .map(|name| (name.clone(), pruning::mask::zero_fraction(&w[name])))
            .collect();
        let best = out.join("best");
        save_tinyformer(&model, &c.arch, &best.join("model.bpk"))?;
        let int8 = quantize_and_place(&model, &c.arch, &data, &target, &limits, &best)?;
        let fin = FinalRecord {
            candidate: winner,
            valid_accuracy: accuracy(&model, &data.valid, batch, device),
            test_accuracy: accuracy(&model, &data.test, batch, device),
            resources: c.resources.clone(),
            realized_sparsity,
            int8,
        };
        write_best(&best, &c, &target, &limits, &fin.int8)?;
        state.final_model = Some(fin);
        state.save(out)?;
        Progress::clear(&progress_dir(out))?;
    }
    let rows = pareto::rows(&state.candidates);
    let front = pareto::front(&rows);
    write_atomic(
        &out.join("pareto.md"),
        pareto::table(&rows, &front).as_bytes(),
    )?;
    pareto::plot(&rows, &front, &out.join("pareto.svg"))?;
    write_summary(out, &state, &front)?;
    Ok(SearchOutcome {
        finished: true,
        out: out.to_path_buf(),
        final_model: state.final_model.clone(),
        pareto: front,
    })
}

/// The folder of the checkpoints inside the search's training runs.
fn progress_dir(out: &Path) -> PathBuf {
    out.join("progress")
}

/// The checkpoints of the training run `job` of the search in `out`.
fn run_progress(cfg: &SearchConfig, out: &Path, job: impl Into<String>) -> Progress {
    Progress::new(&progress_dir(out), cfg.checkpoint_every_steps, job)
}

/// Calibration images for PTQ: the first of the training split (a seeded random order).
pub const CALIBRATION_IMAGES: usize = 256;

/// PTQ of the compressed model (power-of-two scales, per-channel weights, Scaled-LayerNorm),
/// its int8 test accuracy from the integer interpreter, and the exporter's SRAM and flash for it.
/// Writes `model.int8` and `quantization.txt` into `best`.
pub(crate) fn quantize_and_place(
    model: &training::tinyformer::TinyFormer,
    arch: &training::tinyformer::TinyFormerArch,
    data: &Data,
    target: &Target,
    limits: &Limits,
    best: &Path,
) -> Result<Int8Record> {
    let per: usize = data.train.shape.iter().product();
    let images = |t: &ImageTensors, n: usize| -> Vec<Vec<f32>> {
        (0..n.min(t.len()))
            .map(|i| t.values[i * per..(i + 1) * per].to_vec())
            .collect()
    };
    let opts = quant::ptq::PtqOptions {
        scaled_layer_norm: true,
        ..Default::default()
    };
    let ptq = |e: quant::ptq::PtqError| SearchError::Search(format!("int8 quantization: {e}"));
    let (graph, report) = quant::ptq::quantize_tinyformer(
        &model.valid(),
        arch,
        &images(&data.train, CALIBRATION_IMAGES),
        &opts,
    )
    .map_err(ptq)?;
    let test = images(&data.test, data.test.len());
    let cm = quant::ptq::evaluate_int8_images(&graph, &test, &data.test.labels, &data.class_names)
        .map_err(ptq)?;
    // The deployed graph takes raw pixels in [0, 1]: it standardizes with the training
    // statistics before quantizing its input (same scales, so the same integer network).
    let mut deployed = graph;
    quant::ptq::set_channel_standardization(&mut deployed, &data.mean, &data.std).map_err(ptq)?;
    quant::save(&deployed, best.join("model.int8"))
        .map_err(|e| SearchError::Search(format!("{}: {e}", best.join("model.int8").display())))?;
    write_atomic(&best.join("quantization.txt"), report.to_table().as_bytes())?;
    let (_, est) =
        export::plan::estimate(&deployed, target, &limits.int8_options()).map_err(|e| {
            SearchError::Search(format!("placing the int8 model on {}: {e}", target.name))
        })?;
    Ok(Int8Record::of(cm.accuracy(), &est))
}

/// The limit each violation line names (`SRAM`, `flash`, `latency`).
pub(crate) fn violation_kinds(violations: &[String]) -> impl Iterator<Item = String> + '_ {
    violations
        .iter()
        .map(|v| v.split_whitespace().next().unwrap_or("?").to_string())
}

/// `(index, score)` of the evaluated entries.
pub(crate) fn scored(scores: impl Iterator<Item = Option<f64>>) -> Vec<(usize, f64)> {
    scores
        .enumerate()
        .filter_map(|(k, a)| a.map(|a| (k, a)))
        .collect()
}

/// The best-scoring index; ties go to the earliest.
pub(crate) fn best(scored: &[(usize, f64)]) -> Option<usize> {
    scored
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|&(k, _)| k)
}

fn unfinished(out: &Path) -> SearchOutcome {
    SearchOutcome {
        finished: false,
        out: out.to_path_buf(),
        final_model: None,
        pareto: vec![],
    }
}

/// AGP over a run of `steps` optimizer steps with a mask update every `frequency` steps. The
/// last update falls inside the run, so every layer reaches its target while training and the
/// last steps recover at it. (`Schedule::Agp::steps` counts mask updates, not optimizer steps:
/// passing the run's length there left the layers at a fraction of their targets until a final
/// one-shot jump with no recovery.)
pub(crate) fn agp_schedule(steps: usize, frequency: usize) -> Schedule {
    // a run no longer than the update interval still gets one update inside it
    let frequency = frequency.clamp(1, steps.saturating_sub(1).max(1));
    Schedule::Agp {
        initial_sparsity: 0.0,
        start_step: 0,
        frequency,
        steps: (steps.saturating_sub(1) / frequency).max(1),
    }
}

/// Alg. 2's body for one supernet: TestSupernet, SPOS training, one-shot-pruned accuracy of
/// `paths` sparse paths that fit.
#[allow(clippy::too_many_arguments)]
fn evaluate_supernet(
    cfg: &SearchConfig,
    sup: &SupernetConfig,
    i: usize,
    data: &Data,
    target: &Target,
    limits: &Limits,
    out: &Path,
    device: &Device,
) -> Result<SupernetRecord> {
    let sn = &cfg.supernas;
    let mut rng = StdRng::seed_from_u64(derive(cfg.seed, 3, i as u64));
    let mut over = 0;
    for _ in 0..sn.test_paths {
        let arch = sup.arch(&sup.sample_path(&mut rng))?;
        let sparse = sample(&arch, &cfg.sparse_space, &mut rng);
        let (r, _) = evaluate(&arch, &sparse, target, limits)?;
        if r.sram_bytes > limits.sram_bytes {
            over += 1;
        }
    }
    let mut record = SupernetRecord {
        config: sup.clone(),
        skipped: None,
        avg_accuracy: None,
        paths_evaluated: 0,
        paths_rejected: 0,
        rejections: BTreeMap::new(),
        checkpoint: None,
    };
    if sn.test_paths > 0 && 2 * over > sn.test_paths {
        record.skipped = Some(format!(
            "TestSupernet: {over} of {} sampled paths exceed the SRAM limit",
            sn.test_paths
        ));
        return Ok(record);
    }
    let supernet = Supernet::init(sup, derive(cfg.seed, 4, i as u64), device)?;
    let supernet = train_supernet(
        supernet,
        sup,
        &data.train,
        &cfg.train,
        sn.train_steps,
        derive(cfg.seed, 8, i as u64),
        Some(&run_progress(cfg, out, format!("supernet {i}"))),
        device,
    )?;
    let dir = out.join("supernets");
    std::fs::create_dir_all(&dir).map_err(|e| SearchError::io(&dir, e))?;
    let rel = format!("supernets/supernet_{i}.bpk");
    training::checkpoint::save_model(&supernet, &out.join(&rel))?;
    record.checkpoint = Some(rel);
    let mut accs = Vec::new();
    for _ in 0..sn.paths {
        let path = sup.sample_path(&mut rng);
        let arch = sup.arch(&path)?;
        let sparse = sample(&arch, &cfg.sparse_space, &mut rng);
        let (r, _) = evaluate(&arch, &sparse, target, limits)?;
        if !r.fits() {
            record.paths_rejected += 1;
            tracing::info!(supernet = i, why = ?r.violations, "path rejected before evaluation");
            for kind in violation_kinds(&r.violations) {
                *record.rejections.entry(kind).or_insert(0) += 1;
            }
            continue;
        }
        let model = prune_one_shot(supernet.extract(sup, &path)?, &arch, &sparse)?;
        accs.push(accuracy(
            &model,
            &data.valid,
            cfg.train.batch_size * 4,
            device,
        ));
    }
    record.paths_evaluated = accs.len();
    if !accs.is_empty() {
        record.avg_accuracy = Some(accs.iter().sum::<f64>() / accs.len() as f64);
    }
    Ok(record)
}

fn write_best(
    best: &Path,
    c: &CandidateRecord,
    target: &Target,
    limits: &Limits,
    int8: &Int8Record,
) -> Result<()> {
    write_ron(&best.join("arch.ron"), &c.arch)?;
    write_ron(&best.join("sparsity.ron"), &c.sparse)?;
    write_cost_report(best, &c.arch, &c.sparse, target, limits, int8)
}

/// `cost.txt` (the cost model's layer table and totals beside the exported int8 model's
/// arena and flash) and `memory.svg` for a model in `best`.
pub(crate) fn write_cost_report(
    best: &Path,
    arch: &training::tinyformer::TinyFormerArch,
    sparse: &crate::sparsity::SparseConfig,
    target: &Target,
    limits: &Limits,
    int8: &Int8Record,
) -> Result<()> {
    let (_, est) = evaluate(arch, sparse, target, limits)?;
    let mut report = layer_table(&est);
    report.push_str(&format!(
        "\npeak SRAM {} B (limit {}), flash {} B (limit {}), latency {:.1} ms{}\n",
        est.peak_sram_bytes,
        limits.sram_bytes,
        est.flash.total,
        limits.flash_bytes,
        est.latency_s * 1e3,
        limits
            .latency_ms
            .map(|l| format!(" (limit {l} ms)"))
            .unwrap_or_default()
    ));
    report.push_str(&int8.report_line());
    write_atomic(&best.join("cost.txt"), report.as_bytes())?;
    write_memory_svg(&est, &best.join("memory.svg"))?;
    write_svg(
        &estimate_latency_svg(&est, target.clock_hz)?,
        &best.join("latency.svg"),
    )?;
    Ok(())
}

pub(crate) fn write_ron<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
        .map_err(|e| SearchError::Search(format!("{}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

#[derive(Serialize)]
struct Summary<'a> {
    analyses: Vec<(usize, usize, usize, f64)>,
    supernets_sampled: usize,
    supernets_skipped: usize,
    best_supernet: Option<&'a SupernetConfig>,
    candidates: usize,
    candidates_rejected: usize,
    /// SparseNAS candidates rejected before training, by broken limit.
    rejections: BTreeMap<String, usize>,
    /// SuperNAS sparse paths rejected before evaluation, by broken limit.
    supernas_path_rejections: BTreeMap<String, usize>,
    pareto: &'a [usize],
    final_model: Option<&'a FinalRecord>,
    final_global_sparsity: Option<f64>,
}

fn write_summary(out: &Path, s: &SearchState, front: &[usize]) -> Result<()> {
    let mut rejections = BTreeMap::new();
    for c in &s.candidates {
        for kind in violation_kinds(&c.resources.violations) {
            *rejections.entry(kind).or_insert(0) += 1;
        }
    }
    let mut path_rejections = BTreeMap::new();
    for r in &s.supernets {
        for (kind, n) in &r.rejections {
            *path_rejections.entry(kind.clone()).or_insert(0) += n;
        }
    }
    let best =
        best(&scored(s.supernets.iter().map(|r| r.avg_accuracy))).map(|k| &s.supernets[k].config);
    let summary = Summary {
        analyses: s
            .analyses
            .iter()
            .map(|a| (a.sampled, a.evaluated, a.accepted, a.probability))
            .collect(),
        supernets_sampled: s.supernets.len(),
        supernets_skipped: s.supernets.iter().filter(|r| r.skipped.is_some()).count(),
        best_supernet: best,
        candidates: s.candidates.len(),
        candidates_rejected: s.candidates.iter().filter(|c| c.accuracy.is_none()).count(),
        rejections,
        supernas_path_rejections: path_rejections,
        pareto: front,
        final_model: s.final_model.as_ref(),
        final_global_sparsity: s.final_model.as_ref().map(|f| {
            let c = &s.candidates[f.candidate];
            global_sparsity(&c.arch, &c.sparse)
        }),
    };
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| SearchError::Search(e.to_string()))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())
}

#[cfg(test)]
mod analysis_rounds_tests {
    use super::*;
    use crate::config::AnalysisConfig;

    /// Runs `analysis_rounds` over spaces 0, 1, 2, ... (each adjustment adds one) whose
    /// analyses report `probabilities` in turn; returns (rounds analysed, space chosen).
    fn rounds(probabilities: &[f64], max_adjustments: usize) -> (usize, u32) {
        let cfg = AnalysisConfig {
            samples: 1,
            lambda_lo: 0.8,
            lambda_up: 2.8,
            accept: 0.9,
            max_adjustments,
        };
        let (analyses, chosen) = analysis_rounds(
            &0u32,
            &cfg,
            3,
            |space, _| Ok(((probabilities[*space as usize], 1, 1), *space)),
            |space, _| space + 1,
        )
        .unwrap();
        (analyses.len(), chosen)
    }

    #[test]
    fn stops_at_the_first_space_that_reaches_the_acceptance_probability() {
        assert_eq!(rounds(&[0.5, 0.95, 0.99], 2), (2, 1));
        assert_eq!(rounds(&[0.92, 0.1], 3), (1, 0));
    }

    #[test]
    fn goes_on_with_the_most_acceptable_space_when_adjusting_makes_it_worse() {
        // As seen with TinyFormer's CIFAR-10 space on Fashion-MNIST: 0.70, 0.65, 0.59, 0.46.
        assert_eq!(rounds(&[0.70, 0.65, 0.59, 0.46], 3), (4, 0));
        assert_eq!(rounds(&[0.3, 0.6, 0.5], 2), (3, 1));
        assert_eq!(rounds(&[0.3, 0.4, 0.5], 2), (3, 2));
    }
}
