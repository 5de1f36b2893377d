//! Whether the settings saved in a run folder are the ones a command is run with now: a
//! resumed run must continue the run it interrupted, not mix two runs' settings.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::TrainingError;

/// `path` made absolute and resolved where it exists, else as given: a path setting compared
/// on resume must not differ only by the working folder it was named from.
pub fn canonical_path(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// One setting that differs: its dotted path and both values as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub field: String,
    pub saved: String,
    pub now: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` is {} in the saved run, {} now",
            self.field, self.saved, self.now
        )
    }
}

/// The settings of `saved` and `now` that differ, field by field (nested structs and enum
/// variants by their dotted path), skipping the top-level fields named in `ignore`.
pub fn differences<T: Serialize>(saved: &T, now: &T, ignore: &[&str]) -> Vec<Difference> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(saved), serde_json::to_value(now)) else {
        // config structs always serialize; should one not, it cannot be shown to match
        return vec![Difference {
            field: "(settings that cannot be compared)".into(),
            saved: "?".into(),
            now: "?".into(),
        }];
    };
    let mut out = Vec::new();
    walk("", &a, &b, ignore, &mut out);
    out
}

/// Refuses to resume the run in `out` with `what` settings other than the saved ones: the
/// result would be neither the interrupted run nor the one the settings describe (a longer
/// `epochs`, say, stretches a cosine schedule already half followed).
pub fn check_resumable<T: Serialize>(
    out: &Path,
    what: &str,
    saved: &T,
    now: &T,
    free: &[&str],
) -> Result<(), TrainingError> {
    let diffs = differences(saved, now, free);
    if diffs.is_empty() {
        return Ok(());
    }
    Err(TrainingError::RunMismatch {
        path: out.to_path_buf(),
        what: what.into(),
        differences: describe(&diffs),
    })
}

/// The differences as one sentence for an error message.
pub fn describe(diffs: &[Difference]) -> String {
    diffs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Longest value text an error message shows.
const SHOWN_CHARS: usize = 60;

fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The variant name of an externally tagged enum value (`{"Variant": {...}}` or
/// `"Variant"`), if `v` looks like one.
fn variant(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.keys().next().map(String::as_str),
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn walk(path: &str, a: &Value, b: &Value, ignore: &[&str], out: &mut Vec<Difference>) {
    let field = || {
        if path.is_empty() {
            "(whole value)".to_string()
        } else {
            path.to_string()
        }
    };
    // Both sides have one type: two single-key objects with other keys, or a string beside an
    // object, are two variants of an enum. Name the variants, not their whole contents.
    if let (Some(x), Some(y)) = (variant(a), variant(b))
        && x != y
        && (a.is_object() || b.is_object())
    {
        out.push(Difference {
            field: field(),
            saved: x.into(),
            now: y.into(),
        });
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if path.is_empty() && ignore.contains(&key.as_str()) {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(
                    &child,
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    ignore,
                    out,
                );
            }
        }
        _ if a != b => out.push(Difference {
            field: field(),
            saved: shown(a),
            now: shown(b),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DistillTargets, DistillationConfig, TrainerConfig};
    use crate::speech_data::DataSpec;
    use datasets::Task;

    #[test]
    fn names_each_changed_field_with_both_values() {
        let saved = TrainerConfig::default();
        let now = TrainerConfig {
            epochs: 5,
            learning_rate: 0.003,
            ..saved.clone()
        };
        let diffs = differences(&saved, &now, &[]);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert_eq!(diffs[0].field, "epochs");
        assert_eq!(
            (diffs[0].saved.as_str(), diffs[0].now.as_str()),
            ("140", "5")
        );
        assert_eq!(diffs[1].field, "learning_rate");
        assert!(describe(&diffs).contains("`learning_rate` is 0.001 in the saved run, 0.003 now"));
    }

    #[test]
    fn another_data_variant_is_named_not_dumped() {
        let synth = DataSpec::SyntheticKeywords {
            folder: "data/a".into(),
            words: None,
            per_word: 10,
            seed: 1,
            task: Task::Labels12,
            augment: Default::default(),
            mfcc: Default::default(),
        };
        let speech = synth.clone().with_folder("data/a".into());
        let diffs = differences(&synth, &speech, &[]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(
            (diffs[0].saved.as_str(), diffs[0].now.as_str()),
            ("SyntheticKeywords", "SpeechCommands")
        );
        let other = synth.clone().with_task(Task::Labels35);
        let diffs = differences(&synth, &other, &[]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].field, "SyntheticKeywords.task");
    }

    #[test]
    fn long_values_are_cut() {
        let a = vec!["word".to_string(); 40];
        let b = vec!["other".to_string(); 40];
        let diffs = differences(&a, &b, &[]);
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].saved.ends_with("...") && diffs[0].saved.len() < 70);
    }

    #[test]
    fn ignored_fields_and_equal_settings_give_nothing() {
        let saved = TrainerConfig::default();
        let now = TrainerConfig {
            eval_batch_size: 7,
            ..saved.clone()
        };
        assert!(differences(&saved, &saved.clone(), &[]).is_empty());
        assert!(differences(&saved, &now, &["eval_batch_size"]).is_empty());
        assert_eq!(differences(&saved, &now, &[]).len(), 1);
    }

    #[test]
    fn nested_and_enum_settings_are_named_by_path() {
        let with = |targets| TrainerConfig {
            distillation: Some(DistillationConfig {
                teacher: "t.bpk".into(),
                targets,
            }),
            ..TrainerConfig::default()
        };
        let soft = |weight| DistillTargets::Soft {
            temperature: 2.0,
            weight,
        };
        let diffs = differences(&with(soft(0.5)), &with(soft(1.0)), &[]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].field, "distillation.targets.Soft.weight");
        // a switch of variant, or from none to some, is one difference at the parent
        let diffs = differences(&TrainerConfig::default(), &with(DistillTargets::Hard), &[]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].field, "distillation");
        let diffs = differences(&with(DistillTargets::Hard), &with(soft(0.5)), &[]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].field, "distillation.targets");
        assert_eq!(
            (diffs[0].saved.as_str(), diffs[0].now.as_str()),
            ("Hard", "Soft")
        );
    }
}
