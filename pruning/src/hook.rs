//! Pruning during training: a [`StepHook`] that updates block masks on the schedule's steps,
//! reapplies them after every optimizer step (pruned weights stay exactly zero), and keeps
//! them in `masks-N.json` beside the trainer's checkpoint of step N so a resumed run
//! continues with the same masks.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use training::trainer::{HookStart, StepHook};
use training::{Kwt, TrainingError, load_checkpoint};

use crate::config::{LayerInfo, PruningPlan};
use crate::error::PruneError;
use crate::mask::{BlockMask, Score, WeightLayout, prune_blocks};
use crate::model::{apply_mask_tensor, kwt_layers, linear_layers_mut, linear_weights, mask_tensor};

/// The mask set of step N of a pruning run is `masks-N.json`, beside the checkpoint of
/// that step (see [`masks_file`]).
pub const MASKS_KIND: &str = "masks";
/// The mask file of run folders from before mask files carried their step.
const LEGACY_MASKS_FILE: &str = "masks.json";

/// The mask set of step `global_step` in run folder `out`.
pub fn masks_file(out: &Path, global_step: usize) -> PathBuf {
    training::checkpoint::step_file(out, MASKS_KIND, global_step, "json")
}
const MASKS_VERSION: u32 = 1;

/// What a pruning run starts from (`pruning.ron` in its folder): a resumed run must go on
/// from the same checkpoint towards the same targets on the same schedule.
pub const PRUNING_SETTINGS_FILE: &str = "pruning.ron";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PruningSettings {
    /// The dense checkpoint fine-tuned, canonical; `None` when training from scratch.
    checkpoint: Option<PathBuf>,
    score: Score,
    schedule: crate::schedule::Schedule,
    /// Each prunable layer's block size and final sparsity, by name.
    layers: std::collections::BTreeMap<String, LayerTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LayerTarget {
    block: usize,
    sparsity: f64,
}

/// A set of block masks as a file: which blocks of which layer are pruned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskSet {
    pub version: u32,
    /// The optimizer step these masks belong to.
    pub global_step: usize,
    pub score: Score,
    pub layers: Vec<SavedMask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedMask {
    pub name: String,
    pub layout: WeightLayout,
    pub block: usize,
    /// Final target sparsity of the layer.
    pub target: f64,
    /// Current fraction of pruned blocks.
    pub sparsity: f64,
    /// Pruned blocks, packed as by [`BlockMask::to_hex`].
    pub pruned: String,
}

impl MaskSet {
    pub fn read(path: &Path) -> Result<Self, PruneError> {
        let bytes = std::fs::read(path).map_err(|e| PruneError::file(path, e))?;
        let set: MaskSet = serde_json::from_slice(&bytes).map_err(|e| PruneError::file(path, e))?;
        if set.version != MASKS_VERSION {
            return Err(PruneError::file(
                path,
                format!(
                    "mask file version {} (this build reads version {MASKS_VERSION})",
                    set.version
                ),
            ));
        }
        Ok(set)
    }

    /// Written atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), PruneError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| PruneError::file(path, e))?;
        training::checkpoint::write_atomic(path, &json)?;
        Ok(())
    }

    /// The masks in `plan`'s layer order; the layers must be the plan's.
    pub fn masks_for(&self, plan: &PruningPlan, path: &Path) -> Result<Vec<BlockMask>, PruneError> {
        if self.layers.len() != plan.layers.len() {
            return Err(PruneError::file(
                path,
                format!(
                    "holds masks of {} layers, the pruning plan has {}",
                    self.layers.len(),
                    plan.layers.len()
                ),
            ));
        }
        self.layers
            .iter()
            .zip(&plan.layers)
            .map(|(saved, layer)| {
                if saved.name != layer.name
                    || saved.layout != layer.geometry.layout()
                    || saved.block != layer.geometry.block()
                {
                    return Err(PruneError::file(
                        path,
                        format!(
                            "mask of `{}` (block {}) does not match the plan's `{}` (block {})",
                            saved.name,
                            saved.block,
                            layer.name,
                            layer.geometry.block()
                        ),
                    ));
                }
                if saved.target != layer.target {
                    return Err(PruneError::file(
                        path,
                        format!(
                            "`{}` was pruned toward {} but the configuration now asks for {}; use another output folder",
                            saved.name, saved.target, layer.target
                        ),
                    ));
                }
                BlockMask::from_hex(&saved.pruned, layer.geometry.blocks()).ok_or_else(|| {
                    PruneError::file(path, format!("corrupt mask of `{}`", saved.name))
                })
            })
            .collect()
    }
}

/// Drives a [`PruningPlan`] through training; see the module documentation.
pub struct PruningHook {
    plan: PruningPlan,
    masks: Vec<BlockMask>,
    /// The masks as tensors on the model's device, rebuilt when the masks change.
    tensors: Vec<Option<Tensor<2>>>,
    initial: Option<PathBuf>,
}

fn check_layers(plan: &PruningPlan, layers: &[LayerInfo]) -> Result<(), PruneError> {
    let same = plan.layers.len() == layers.len()
        && plan
            .layers
            .iter()
            .zip(layers)
            .all(|(p, l)| p.name == l.name && p.geometry.layout() == l.layout);
    if same {
        Ok(())
    } else {
        Err(PruneError::Layout {
            layer: "*".into(),
            message: "the model's layers are not the ones the pruning plan was made for".into(),
        })
    }
}

impl PruningHook {
    pub fn new(plan: PruningPlan) -> Self {
        let masks = plan
            .layers
            .iter()
            .map(|l| BlockMask::dense(l.geometry.blocks()))
            .collect();
        let tensors = vec![None; plan.layers.len()];
        Self {
            plan,
            masks,
            tensors,
            initial: None,
        }
    }

    /// Fine-tune: a fresh run starts from this checkpoint's weights instead of a new model.
    pub fn starting_from(mut self, checkpoint: PathBuf) -> Self {
        self.initial = Some(checkpoint);
        self
    }

    pub fn plan(&self) -> &PruningPlan {
        &self.plan
    }

    fn settings(&self) -> PruningSettings {
        PruningSettings {
            checkpoint: self
                .initial
                .as_ref()
                .map(|c| training::run_match::canonical_path(c)),
            score: self.plan.score,
            schedule: self.plan.schedule,
            layers: self
                .plan
                .layers
                .iter()
                .map(|l| {
                    let target = LayerTarget {
                        block: l.geometry.block(),
                        sparsity: l.target,
                    };
                    (l.name.clone(), target)
                })
                .collect(),
        }
    }

    pub fn masks(&self) -> &[BlockMask] {
        &self.masks
    }

    /// The current masks as a file value.
    pub fn mask_set(&self, global_step: usize) -> MaskSet {
        MaskSet {
            version: MASKS_VERSION,
            global_step,
            score: self.plan.score,
            layers: self
                .plan
                .layers
                .iter()
                .zip(&self.masks)
                .map(|(l, m)| SavedMask {
                    name: l.name.clone(),
                    layout: l.geometry.layout(),
                    block: l.geometry.block(),
                    target: l.target,
                    sparsity: m.sparsity(),
                    pruned: m.to_hex(),
                })
                .collect(),
        }
    }

    /// Recomputes the masks from `model`'s weights for the schedule's sparsity at `step`.
    pub fn update(&mut self, model: &Kwt, step: usize) -> Result<(), PruneError> {
        check_layers(&self.plan, &kwt_layers(model))?;
        let layers = crate::model::linear_layers(model);
        let (mut pruned, mut total) = (0usize, 0usize);
        for (i, layer) in self.plan.layers.iter().enumerate() {
            let target = self.plan.schedule.sparsity(layer.target, step);
            let weights = linear_weights(layers[i].1);
            let mask = prune_blocks(
                &weights,
                &layer.geometry,
                target,
                self.plan.score,
                Some(&self.masks[i]),
                &layer.name,
            )?;
            pruned += mask.pruned_count() * layer.geometry.block();
            total += layer.geometry.layout().len();
            if mask != self.masks[i] {
                self.masks[i] = mask;
                self.tensors[i] = None;
            }
        }
        tracing::info!(
            step,
            "pruning masks updated: {:.2}% of prunable weights pruned",
            100.0 * pruned as f64 / total.max(1) as f64
        );
        Ok(())
    }

    /// Zeroes every pruned block of `model` (the model the plan was made for).
    pub fn apply(&mut self, mut model: Kwt) -> Kwt {
        for (i, (_, linear)) in linear_layers_mut(&mut model).into_iter().enumerate() {
            if self.masks[i].pruned_count() == 0 {
                continue;
            }
            let geometry = &self.plan.layers[i].geometry;
            let mask = self.tensors[i]
                .get_or_insert_with(|| mask_tensor(linear, geometry, &self.masks[i]));
            apply_mask_tensor(linear, mask);
        }
        model
    }

    fn start(&mut self, model: Kwt, start: &HookStart<'_>) -> Result<Kwt, PruneError> {
        check_layers(&self.plan, &kwt_layers(&model))?;
        match start.resumed_at {
            Some(step) => {
                let settings = start.out.join(PRUNING_SETTINGS_FILE);
                // folders from before the settings were written are checked by their masks
                if settings.is_file() {
                    let saved: PruningSettings = training::checkpoint::read_ron(&settings)?;
                    training::run_match::check_resumable(
                        start.out,
                        "pruning",
                        &saved,
                        &self.settings(),
                        &[],
                    )?;
                }
                let mut path = masks_file(start.out, step);
                let legacy = start.out.join(LEGACY_MASKS_FILE);
                if !path.is_file() && legacy.is_file() {
                    path = legacy;
                }
                if !path.is_file() {
                    return Err(PruneError::file(
                        &path,
                        format!(
                            "missing: the run folder's checkpoint is of step {step}, but it \
                             holds no masks of that step (was it written by a pruning run?)"
                        ),
                    ));
                }
                let set = MaskSet::read(&path)?;
                if set.global_step != step {
                    return Err(PruneError::file(
                        &path,
                        format!(
                            "masks of step {}, but the checkpoint is of step {step}",
                            set.global_step
                        ),
                    ));
                }
                self.masks = set.masks_for(&self.plan, &path)?;
                self.tensors = vec![None; self.masks.len()];
                tracing::info!(step, "pruning resumes with the masks of {}", path.display());
                Ok(self.apply(model))
            }
            None => {
                training::checkpoint::write_ron(
                    &start.out.join(PRUNING_SETTINGS_FILE),
                    &self.settings(),
                )?;
                let model = match &self.initial {
                    Some(path) => {
                        let (loaded, _) = load_checkpoint(path, start.device)?;
                        if kwt_layers(&loaded) != kwt_layers(&model) {
                            return Err(PruneError::file(
                                path,
                                "is not a checkpoint of the model being trained",
                            ));
                        }
                        loaded
                    }
                    None => model,
                };
                if self.plan.schedule.is_update(0) {
                    self.update(&model, 0)?;
                }
                Ok(self.apply(model))
            }
        }
    }
}

impl StepHook for PruningHook {
    fn on_start(&mut self, model: Kwt, start: &HookStart<'_>) -> Result<Kwt, TrainingError> {
        Ok(self.start(model, start)?)
    }

    fn after_step(&mut self, model: Kwt, global_step: usize) -> Result<Kwt, TrainingError> {
        if self.plan.schedule.is_update(global_step) {
            self.update(&model, global_step)?;
        }
        Ok(self.apply(model))
    }

    fn save(&self, out: &Path, global_step: usize) -> Result<(), TrainingError> {
        Ok(self
            .mask_set(global_step)
            .write(&masks_file(out, global_step))?)
    }

    fn committed(&self, out: &Path, global_step: usize) -> Result<(), TrainingError> {
        training::checkpoint::remove_stale_step_files(
            out,
            &[(MASKS_KIND, "json", Some(global_step))],
        )?;
        training::checkpoint::remove_if_present(&out.join(LEGACY_MASKS_FILE))
    }

    fn may_be_best(&self, global_step: usize) -> bool {
        global_step >= self.plan.schedule.end_step()
    }
}

/// One-shot pruning of a model outside training: masks at the plan's final sparsities,
/// applied. Returns the pruned model and its masks.
pub fn prune_once(model: Kwt, plan: &PruningPlan) -> Result<(Kwt, Vec<BlockMask>), PruneError> {
    let mut one_shot = plan.clone();
    one_shot.schedule = crate::schedule::Schedule::OneShot { step: 0 };
    let mut hook = PruningHook::new(one_shot);
    check_layers(&hook.plan, &kwt_layers(&model))?;
    hook.update(&model, 0)?;
    let model = hook.apply(model);
    Ok((model, hook.masks))
}

/// Layers of `model` where a pruned block of `masks` holds a nonzero weight (empty: all hold).
pub fn mask_violations(model: &Kwt, plan: &PruningPlan, masks: &[BlockMask]) -> Vec<String> {
    crate::model::linear_layers(model)
        .into_iter()
        .zip(plan.layers.iter().zip(masks))
        .filter(|((_, linear), (layer, mask))| {
            !mask.holds(&linear_weights(linear), &layer.geometry)
        })
        .map(|((name, _), _)| name)
        .collect()
}
