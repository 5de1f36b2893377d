//! Operand tiles of the Cortex-M DSP kernels: which layers get them.
//!
//! A tile (4 input rows of a Linear, or 4 rows of queries, scores and probabilities of a fused
//! attention, extended to int16 lanes) makes the kernel faster and costs arena bytes while the
//! layer runs. Where the layer runs at the arena's peak, the tile raises the peak SRAM; elsewhere
//! it is free. [`TilePolicy::Auto`] keeps exactly the free ones: [`choose`] takes the plan
//! without tiles as the budget and adds tiles, in execution order, while the planned arena stays
//! within it. The cost model (`estimate`) and the exporter (`export::plan`) both call [`choose`]
//! on the same buffer list, so they reach the same choice.

use crate::memory::{self, Buffer};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Which layers run with operand tiles (on targets whose core has the DSP extension; elsewhere
/// none do). In config files: `true` ([`TilePolicy::Always`]), `false` ([`TilePolicy::Never`])
/// or `"auto"` ([`TilePolicy::Auto`]): the field was a bool before `Auto` existed, and saved
/// configs, graphs and search states still say `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TilePolicy {
    /// No tiles: the smallest arena, the slower kernels.
    Never,
    /// Every layer whose shape allows one (the fastest kernels, up to a few KB more SRAM).
    #[default]
    Always,
    /// Only the tiles that do not raise the arena above its size without tiles.
    Auto,
}

impl TilePolicy {
    /// The policy on a target with (`dsp`) or without the DSP extension.
    pub fn on_target(self, dsp: bool) -> TilePolicy {
        if dsp { self } else { TilePolicy::Never }
    }

    pub fn label(self) -> &'static str {
        match self {
            TilePolicy::Never => "off",
            TilePolicy::Always => "on",
            TilePolicy::Auto => "auto",
        }
    }
}

impl From<bool> for TilePolicy {
    fn from(on: bool) -> Self {
        if on {
            TilePolicy::Always
        } else {
            TilePolicy::Never
        }
    }
}

impl std::str::FromStr for TilePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "always" | "true" => Ok(TilePolicy::Always),
            "off" | "never" | "false" => Ok(TilePolicy::Never),
            "auto" => Ok(TilePolicy::Auto),
            _ => Err(format!(
                "unknown operand-tile policy `{s}`: expected on, off or auto"
            )),
        }
    }
}

impl Serialize for TilePolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TilePolicy::Never => s.serialize_bool(false),
            TilePolicy::Always => s.serialize_bool(true),
            TilePolicy::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for TilePolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;

        impl Visitor<'_> for PolicyVisitor {
            type Value = TilePolicy;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TilePolicy, E> {
                Ok(v.into())
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TilePolicy, E> {
                v.parse().map_err(E::custom)
            }
        }

        d.deserialize_any(PolicyVisitor)
    }
}

/// A layer that can run with an operand tile: the index of its scratch buffer in the list given
/// to [`choose`] (holding the bytes with the tile) and its bytes without (0 for a Linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileCandidate {
    pub buffer: usize,
    pub untiled_bytes: u64,
}

/// Which `candidates` keep their tile under [`TilePolicy::Auto`]: all of those that can each fit
/// when together they keep the planned arena ([`memory::plan`]) within the arena with no tile at
/// all; otherwise a set grown greedily in execution order under that bound (not necessarily the
/// largest one). `buffers` holds every candidate's scratch at its tiled size.
pub fn choose(buffers: &[Buffer], candidates: &[TileCandidate]) -> Vec<bool> {
    let mut trial = buffers.to_vec();
    let set = |trial: &mut Vec<Buffer>, keep: &[bool]| {
        for (c, &k) in candidates.iter().zip(keep) {
            trial[c.buffer].bytes = if k {
                buffers[c.buffer].bytes
            } else {
                c.untiled_bytes
            };
        }
    };
    let arena = |trial: &[Buffer]| memory::plan(trial).best.arena_bytes;
    let mut keep = vec![false; candidates.len()];
    set(&mut trial, &keep);
    let budget = arena(&trial);
    // Tiles whose step already holds the budget's worth of live bytes cannot fit: no plan is
    // smaller than the live set.
    let steps = buffers.iter().map(|b| b.end + 1).max().unwrap_or(0);
    let live = memory::live_bytes_per_step(&trial, steps);
    let can_fit: Vec<bool> = candidates
        .iter()
        .map(|c| {
            let b = &buffers[c.buffer];
            live[b.start] + b.bytes.saturating_sub(c.untiled_bytes) <= budget
        })
        .collect();
    // Usually every tile that passes that test fits at once: one plan.
    set(&mut trial, &can_fit);
    if arena(&trial) <= budget {
        return can_fit;
    }
    for i in 0..candidates.len() {
        if !can_fit[i] {
            continue;
        }
        keep[i] = true;
        set(&mut trial, &keep);
        if arena(&trial) > budget {
            keep[i] = false;
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferKind;

    #[test]
    fn policy_reads_bools_and_names() {
        #[derive(Debug, Deserialize)]
        struct S {
            t: TilePolicy,
        }
        for (text, want) in [
            ("(t: true)", TilePolicy::Always),
            ("(t: false)", TilePolicy::Never),
            ("(t: \"auto\")", TilePolicy::Auto),
            ("(t: \"off\")", TilePolicy::Never),
        ] {
            assert_eq!(ron::from_str::<S>(text).unwrap().t, want, "{text}");
        }
        for bad in ["(t: \"sometimes\")", "(t: Auto)", "(t: 1)"] {
            let e = ron::from_str::<S>(bad).unwrap_err().to_string();
            assert!(e.contains("auto"), "{bad}: {e}");
        }
        for p in [TilePolicy::Never, TilePolicy::Always, TilePolicy::Auto] {
            let text = ron::to_string(&p).unwrap();
            assert_eq!(ron::from_str::<TilePolicy>(&text).unwrap(), p, "{text}");
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(
                serde_json::from_str::<TilePolicy>(&text).unwrap(),
                p,
                "{text}"
            );
            assert_eq!(p.label().parse::<TilePolicy>().unwrap(), p);
        }
        assert!("sometimes".parse::<TilePolicy>().is_err());
    }

    fn buf(name: &str, bytes: u64, start: usize, end: usize, kind: BufferKind) -> Buffer {
        Buffer {
            name: name.into(),
            bytes,
            start,
            end,
            kind,
            op: start,
        }
    }

    /// The planned arena with the tiles `keep` says.
    fn arena(buffers: &[Buffer], candidates: &[TileCandidate], keep: &[bool]) -> u64 {
        let mut b = buffers.to_vec();
        for (c, &k) in candidates.iter().zip(keep) {
            if !k {
                b[c.buffer].bytes = c.untiled_bytes;
            }
        }
        memory::plan(&b).best.arena_bytes
    }

    /// A chain of 3 layers; the middle one runs at the peak: its tile would raise the arena, the
    /// others' are free.
    #[test]
    fn keeps_only_the_tiles_off_the_peak() {
        use BufferKind::*;
        let buffers = vec![
            buf("x", 400, 0, 0, Input),
            buf("a.scratch", 64, 0, 0, Scratch),
            buf("a", 400, 0, 1, Output),
            buf("b.scratch", 64, 1, 1, Scratch),
            buf("b", 1000, 1, 2, Output),
            buf("c.scratch", 64, 2, 2, Scratch),
            buf("c", 40, 2, 2, Output),
        ];
        let candidates: Vec<TileCandidate> = [1, 3, 5]
            .iter()
            .map(|&buffer| TileCandidate {
                buffer,
                untiled_bytes: 0,
            })
            .collect();
        let keep = choose(&buffers, &candidates);
        assert_eq!(keep, vec![true, false, true]);
        let arena_with = |keep: &[bool]| arena(&buffers, &candidates, keep);
        assert_eq!(arena_with(&keep), arena_with(&[false; 3]));
        assert!(arena_with(&[true; 3]) > arena_with(&[false; 3]));
    }

    /// Random chains: the choice never raises the arena, and where every tile is free, all are
    /// kept.
    #[test]
    fn never_raises_the_arena() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let steps = 2 + next(10) as usize;
            let mut buffers = vec![buf("in", 4 * (1 + next(100)), 0, 0, BufferKind::Input)];
            let mut candidates = Vec::new();
            for s in 0..steps {
                if next(2) == 0 {
                    let untiled = 4 * next(8);
                    candidates.push(TileCandidate {
                        buffer: buffers.len(),
                        untiled_bytes: untiled,
                    });
                    let extra = 4 * (1 + next(40));
                    buffers.push(buf("t", untiled + extra, s, s, BufferKind::Scratch));
                }
                let end = (s + 1 + next(3) as usize).min(steps - 1);
                buffers.push(buf("o", 4 * (1 + next(100)), s, end, BufferKind::Output));
            }
            buffers[0].end = next(steps as u64) as usize;
            let keep = choose(&buffers, &candidates);
            let arena_with = |keep: &[bool]| arena(&buffers, &candidates, keep);
            let none = vec![false; candidates.len()];
            let all = vec![true; candidates.len()];
            assert!(arena_with(&keep) <= arena_with(&none));
            if arena_with(&all) <= arena_with(&none) {
                assert_eq!(keep, all);
            }
        }
    }
}
