//! `nas search` on a KWT configuration: Alg. 1 on the KWT space, evolutionary selection of
//! sparse KWT candidates (each costed before training, trained with AGP by the trainer of
//! `nas train`), compression of the winner, PTQ to the integer graph, and the results folder.
//! The state is written after every candidate; a candidate's own training resumes from its
//! last checkpoint, so an interrupted search continues where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use cost::report::{
    estimate_latency_svg,
    svg::{write_memory_svg, write_svg},
    table::layer_table,
};
use cost::target::Target;
use indicatif::MultiProgress;
use pruning::{LayerRule, PruningConfig, PruningHook, Score};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use training::trainer::BEST_CHECKPOINT;
use training::{DataSplits, KwtConfig, RunSummary, TrainOptions, TrainOutcome, train_with_hook};

use super::config::{KwtSearchConfig, KwtSpace};
use super::cost::evaluate_kwt;
use super::space::{
    InputShape, KwtAnalysis, adjust_space, analyse, effective_parameters, global_sparsity,
    layer_infos, mutate, sample_model, sample_sparsity,
};
use crate::cost_graph::{Limits, Resources};
use crate::error::{Result, SearchError};
use crate::evolution::parent;
use crate::pareto::{self, Row};
use crate::run::{Budget, agp_schedule, analysis_rounds, bar, derive, scored, write_ron};
use crate::space::{SmallestCost, budget_unreachable};
use crate::sparsity::SparseConfig;
use crate::state::{Int8Record, STATE_FILE, write_atomic};
use crate::{SearchOptions, run::violation_kinds};

/// Samples tried per candidate before the search gives up on finding one that fits.
const MAX_ATTEMPTS: usize = 1000;

/// One trained candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KwtCandidate {
    pub model: KwtConfig,
    pub sparse: SparseConfig,
    pub resources: Resources,
    /// Best validation accuracy once every layer reached its sparsity.
    pub valid_accuracy: f64,
    pub test_accuracy: f64,
    /// Samples rejected by the cost model before this one, by broken limit.
    pub rejected: BTreeMap<String, usize>,
    /// The training run's folder, relative to the results folder.
    pub run: PathBuf,
    pub train_seconds: f64,
}

/// The compressed, quantized winner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KwtFinal {
    pub candidate: usize,
    pub valid_accuracy: f64,
    pub test_accuracy: f64,
    pub resources: Resources,
    pub global_sparsity: f64,
    pub effective_parameters: usize,
    pub int8: Int8Record,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KwtSearchState {
    pub config: KwtSearchConfig,
    pub analyses: Vec<KwtAnalysis>,
    /// The space after the Eq. 1-3 adjustment.
    pub space: Option<KwtSpace>,
    pub candidates: Vec<KwtCandidate>,
    pub final_model: Option<KwtFinal>,
}

impl KwtSearchState {
    fn load_or_new(dir: &Path, config: &KwtSearchConfig) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        if !path.is_file() {
            return Ok(Self {
                config: config.clone(),
                analyses: vec![],
                space: None,
                candidates: vec![],
                final_model: None,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SearchError::io(&path, e))?;
        let state: Self = serde_json::from_str(&text).map_err(|e| SearchError::State {
            path: path.clone(),
            message: format!("cannot parse as a KWT search state ({e}); delete it to start over"),
        })?;
        if &state.config != config {
            return Err(SearchError::State {
                path,
                message: crate::state::other_config_message(&state.config, config),
            });
        }
        Ok(state)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| SearchError::Search(format!("serializing the search state: {e}")))?;
        write_atomic(&dir.join(STATE_FILE), text.as_bytes())
    }
}

/// What `run_kwt_search` returns.
#[derive(Debug, Clone)]
pub struct KwtSearchOutcome {
    pub finished: bool,
    pub out: PathBuf,
    pub final_model: Option<KwtFinal>,
    pub pareto: Vec<usize>,
}

/// Runs (or resumes) the KWT search of `cfg` into `out`.
pub fn run_kwt_search(
    cfg: &KwtSearchConfig,
    out: &Path,
    device: &Device,
    opts: &SearchOptions,
) -> Result<KwtSearchOutcome> {
    std::fs::create_dir_all(out).map_err(|e| SearchError::io(out, e))?;
    let mut state = KwtSearchState::load_or_new(out, cfg)?;
    let target = Target::load(&cfg.budget.target)?;
    let limits = cfg.budget.limits(&target);
    let augment = cfg.candidates.trainer.augment || cfg.compression.trainer.augment;
    let data = cfg.data.load(augment)?;
    if data.features % 2 != 0 {
        return Err(SearchError::Search(format!(
            "the data has {} features per frame; blockwise pruning of the embedding needs an \
             even number",
            data.features
        )));
    }
    let input = InputShape {
        frames: data.frames,
        features: data.features,
        classes: data.labels.len(),
    };
    tracing::info!(
        train = data.train.len(),
        valid = data.valid.len(),
        test = data.test.len(),
        "speech data loaded"
    );
    let mut budget = Budget(opts.stop_after);

    // Alg. 1 and the Eq. 1-3 adjustment.
    if state.space.is_none() {
        let (analyses, space) = analysis_rounds(
            &cfg.kwt_space,
            &cfg.analysis,
            cfg.seed,
            |space, rng| {
                let a = analyse(
                    space,
                    &cfg.sparse_space,
                    &cfg.analysis,
                    input,
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
                "KWT",
                &target,
                &limits,
                SmallestCost::over(state.analyses.iter().map(|a| a.smallest)),
                "make kwt_space smaller or allow higher sparsities",
            ));
        }
        state.space = Some(space);
        state.save(out)?;
    }
    let space = state.space.clone().unwrap_or_else(|| cfg.kwt_space.clone());

    // Selection: evolutionary sampling, cost check, short training with AGP.
    let stage = &cfg.candidates;
    let group = opts.progress.then(MultiProgress::new);
    let overall = bar(
        stage.iterations,
        state.candidates.len(),
        "candidates",
        opts.progress,
    );
    let overall = match &group {
        Some(g) => g.add(overall),
        None => overall,
    };
    for k in state.candidates.len()..stage.iterations {
        if !budget.spend() {
            return Ok(unfinished(out));
        }
        let mut rng = StdRng::seed_from_u64(derive(cfg.seed, 3, k as u64));
        let scores = scored(state.candidates.iter().map(|c| Some(c.valid_accuracy)));
        let mut rejected = BTreeMap::new();
        let (mut found, mut fallback) = (None, None);
        for _ in 0..MAX_ATTEMPTS {
            let (m, sp) = match (k >= stage.population)
                .then(|| parent(&scores, &mut rng))
                .flatten()
            {
                Some(p) => {
                    let c = &state.candidates[p];
                    mutate(&c.model, &c.sparse, &space, &cfg.sparse_space, &mut rng)
                }
                None => {
                    let m = sample_model(&space, input, &mut rng);
                    let sp = sample_sparsity(&m, &cfg.sparse_space, &mut rng);
                    (m, sp)
                }
            };
            let (res, _) = evaluate_kwt(&m, &sp, &target, &limits)?;
            let seen = state
                .candidates
                .iter()
                .any(|c| c.model == m && c.sparse == sp);
            if res.fits() && seen {
                // a candidate trained already: try another, or train it again if nothing new fits
                fallback.get_or_insert((m, sp, res));
                continue;
            }
            if res.fits() {
                found = Some((m, sp, res));
                break;
            }
            for kind in violation_kinds(&res.violations) {
                *rejected.entry(kind).or_insert(0) += 1;
            }
        }
        let Some((model, sparse, resources)) = found.or(fallback) else {
            return Err(SearchError::Search(format!(
                "candidate {k}: none of {MAX_ATTEMPTS} samples fits the budget (broken limits: \
                 {rejected:?})"
            )));
        };
        let line = format!(
            "KWT candidate {}/{}: dim {} depth {} heads {}x{} mlp {}, {:.0} % sparse; SRAM {} B, \
             flash {} B, {:.1} ms",
            k + 1,
            stage.iterations,
            model.dim,
            model.depth,
            model.heads,
            model.dim_head,
            model.mlp_dim,
            100.0 * global_sparsity(&model, &sparse),
            resources.sram_bytes,
            resources.flash_bytes,
            resources.latency_ms
        );
        // above the bars; plain lines when stderr is not a terminal; nothing with --quiet
        if !overall.is_hidden() {
            overall.println(line);
        } else if opts.progress {
            eprintln!("{line}");
        }
        let run = PathBuf::from("candidates").join(format!("{k:03}"));
        let started = Instant::now();
        let summary = train_candidate(
            &model,
            &sparse,
            &stage.trainer,
            stage.prune_frequency,
            derive(cfg.seed, 4, k as u64),
            None,
            &data,
            &out.join(&run),
            device,
            group.as_ref(),
        )?;
        tracing::info!(
            candidate = k,
            valid = summary.best_valid_acc,
            "KWT candidate trained"
        );
        state.candidates.push(KwtCandidate {
            model,
            sparse,
            resources,
            valid_accuracy: summary.best_valid_acc,
            test_accuracy: summary.test_acc,
            rejected,
            run,
            train_seconds: started.elapsed().as_secs_f64(),
        });
        state.save(out)?;
        overall.inc(1);
    }
    overall.finish_and_clear();

    // Compression of the winner, then PTQ.
    let rows = rows(&state.candidates);
    let front = pareto::front(&rows);
    if state.final_model.is_none() {
        if !budget.spend() {
            return Ok(unfinished(out));
        }
        let Some(w) = pareto::winner(&rows) else {
            return Err(SearchError::Search("no candidate was trained".into()));
        };
        let c = state.candidates[w].clone();
        let summary = train_candidate(
            &c.model,
            &c.sparse,
            &cfg.compression.trainer,
            cfg.compression.prune_frequency,
            derive(cfg.seed, 5, 0),
            Some(out.join(&c.run).join(BEST_CHECKPOINT)),
            &data,
            &out.join("final"),
            device,
            group.as_ref(),
        )?;
        let best_dir = out.join("best");
        std::fs::create_dir_all(&best_dir).map_err(|e| SearchError::io(&best_dir, e))?;
        let int8 = quantize_and_place(
            &summary.best_checkpoint,
            device,
            &data,
            cfg.compression.calibration_samples,
            &target,
            &limits,
            &best_dir,
        )?;
        state.final_model = Some(KwtFinal {
            candidate: w,
            valid_accuracy: summary.best_valid_acc,
            test_accuracy: summary.test_acc,
            resources: c.resources.clone(),
            global_sparsity: global_sparsity(&c.model, &c.sparse),
            effective_parameters: effective_parameters(&c.model, &c.sparse),
            int8,
        });
        write_best(
            &best_dir,
            &c,
            cfg,
            &data,
            &summary.best_checkpoint,
            &target,
            &limits,
            state.final_model.as_ref().map(|f| &f.int8),
        )?;
        state.save(out)?;
    }
    write_atomic(
        &out.join("pareto.md"),
        pareto::table(&rows, &front).as_bytes(),
    )?;
    pareto::plot(&rows, &front, &out.join("pareto.svg"))?;
    write_summary(out, &state, &front)?;
    Ok(KwtSearchOutcome {
        finished: true,
        out: out.to_path_buf(),
        final_model: state.final_model.clone(),
        pareto: front,
    })
}

fn unfinished(out: &Path) -> KwtSearchOutcome {
    KwtSearchOutcome {
        finished: false,
        out: out.to_path_buf(),
        final_model: None,
        pareto: vec![],
    }
}

fn rows(c: &[KwtCandidate]) -> Vec<Row> {
    c.iter()
        .map(|r| Row {
            accuracy: Some(r.valid_accuracy),
            resources: r.resources.clone(),
            params: effective_parameters(&r.model, &r.sparse),
        })
        .collect()
}

/// The pruning configuration of a candidate run of `steps` optimizer steps: AGP over its first
/// two thirds (an update every `frequency` steps), fine-tuning at the targets after.
pub fn pruning_config(sparse: &SparseConfig, steps: usize, frequency: usize) -> PruningConfig {
    PruningConfig {
        // every layer not listed stays dense; 2 divides every KWT layer's input width here
        default: LayerRule {
            sparsity: 0.0,
            block: 2,
        },
        layers: sparse
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    LayerRule {
                        sparsity: s.sparsity,
                        block: s.block,
                    },
                )
            })
            .collect(),
        score: Score::L2,
        schedule: agp_schedule((2 * steps / 3).max(2), frequency),
    }
}

/// Trains `model` with `sparse` reached by AGP into `dir` (resuming a run found there);
/// `start` fine-tunes from a checkpoint instead of a fresh initialisation.
#[allow(clippy::too_many_arguments)]
fn train_candidate(
    model: &KwtConfig,
    sparse: &SparseConfig,
    trainer: &training::TrainerConfig,
    frequency: usize,
    seed: u64,
    start: Option<PathBuf>,
    data: &DataSplits,
    dir: &Path,
    device: &Device,
    bars: Option<&MultiProgress>,
) -> Result<RunSummary> {
    let mut tcfg = trainer.clone();
    tcfg.seed = seed;
    let steps = run_steps(&tcfg, data);
    let plan = pruning_config(sparse, steps, frequency).plan(&layer_infos(model))?;
    let mut hook = PruningHook::new(plan);
    if let Some(s) = start {
        hook = hook.starting_from(s);
    }
    let options = TrainOptions {
        progress: bars.is_some(),
        bars: bars.cloned(),
        ..Default::default()
    };
    match train_with_hook(model, &tcfg, data, dir, device, &options, &mut hook)? {
        TrainOutcome::Finished(s) => Ok(*s),
        TrainOutcome::Interrupted { global_step } => Err(SearchError::Search(format!(
            "{}: training stopped at step {global_step}",
            dir.display()
        ))),
    }
}

/// Optimizer steps of a training run (the trainer keeps the last, smaller batch).
fn run_steps(trainer: &training::TrainerConfig, data: &DataSplits) -> usize {
    trainer.epochs * training::trainer::steps_per_epoch(data.train.len(), trainer.batch_size)
}

fn quantize_and_place(
    checkpoint: &Path,
    device: &Device,
    data: &DataSplits,
    calibration_samples: usize,
    target: &Target,
    limits: &Limits,
    best: &Path,
) -> Result<Int8Record> {
    let (model, kcfg) = training::load_checkpoint(checkpoint, &device.clone().without_autodiff())?;
    let ptq = |e: quant::ptq::PtqError| SearchError::Search(format!("int8 quantization: {e}"));
    let samples = training::data::evenly_spaced_samples(data.train.as_ref(), calibration_samples)?;
    let opts = quant::ptq::PtqOptions {
        calibration_samples: samples.len(),
        ..Default::default()
    };
    let (graph, report) = quant::ptq::quantize_kwt(&model, &kcfg, &samples, &opts).map_err(ptq)?;
    let cm = quant::ptq::evaluate_int8(&graph, data.test.as_ref(), &data.labels).map_err(ptq)?;
    let path = best.join("model.int8");
    quant::save(&graph, &path)
        .map_err(|e| SearchError::Search(format!("{}: {e}", path.display())))?;
    write_atomic(&best.join("quantization.txt"), report.to_table().as_bytes())?;
    let (_, est) = export::plan::estimate(&graph, target, &limits.int8_options()).map_err(|e| {
        SearchError::Search(format!("placing the int8 model on {}: {e}", target.name))
    })?;
    Ok(Int8Record::of(cm.accuracy(), &est))
}

#[allow(clippy::too_many_arguments)]
fn write_best(
    best: &Path,
    c: &KwtCandidate,
    cfg: &KwtSearchConfig,
    data: &DataSplits,
    checkpoint: &Path,
    target: &Target,
    limits: &Limits,
    int8: Option<&Int8Record>,
) -> Result<()> {
    // the checkpoint with its model.ron and data.ron, as `nas eval` and `nas quantize` read it
    write_ron(
        &best.join(training::checkpoint::MODEL_CONFIG_FILE),
        &c.model,
    )?;
    write_ron(&best.join(training::speech_data::DATA_SPEC_FILE), &cfg.data)?;
    let bpk = best.join("model.bpk");
    std::fs::copy(checkpoint, &bpk).map_err(|e| SearchError::io(&bpk, e))?;
    let steps = run_steps(&cfg.compression.trainer, data);
    write_ron(
        &best.join("sparsity.ron"),
        &pruning_config(&c.sparse, steps, cfg.compression.prune_frequency),
    )?;
    let (_, est) = evaluate_kwt(&c.model, &c.sparse, target, limits)?;
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
    if let Some(i) = int8 {
        report.push_str(&i.report_line());
    }
    write_atomic(&best.join("cost.txt"), report.as_bytes())?;
    write_memory_svg(&est, &best.join("memory.svg"))?;
    write_svg(
        &estimate_latency_svg(&est, target.clock_hz)?,
        &best.join("latency.svg"),
    )?;
    Ok(())
}

#[derive(Serialize)]
struct Summary<'a> {
    analyses: Vec<(usize, usize, usize, f64)>,
    space: Option<&'a KwtSpace>,
    candidates: usize,
    /// Samples rejected by the cost model before training, by broken limit.
    rejections: BTreeMap<String, usize>,
    pareto: &'a [usize],
    final_model: Option<&'a KwtFinal>,
}

fn write_summary(out: &Path, s: &KwtSearchState, front: &[usize]) -> Result<()> {
    let mut rejections = BTreeMap::new();
    for c in &s.candidates {
        for (k, n) in &c.rejected {
            *rejections.entry(k.clone()).or_insert(0) += n;
        }
    }
    let summary = Summary {
        analyses: s
            .analyses
            .iter()
            .map(|a| (a.sampled, a.evaluated, a.accepted, a.probability))
            .collect(),
        space: s.space.as_ref(),
        candidates: s.candidates.len(),
        rejections,
        pareto: front,
        final_model: s.final_model.as_ref(),
    };
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| SearchError::Search(format!("summary: {e}")))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())
}
