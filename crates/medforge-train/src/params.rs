//! What is trained, laid out flat: every trainable tensor (a LoRA pair's A and B, or in full fine-tuning each of the
//! model's weights) gets a range of one gradient buffer, and the optimiser's moments use the same ranges. The values
//! themselves stay in the model; [`Trainable::step`] walks them in layout order beside their gradients.

use std::collections::HashMap;
use std::ops::Range;

use medforge_engine::model::{GradSink, LoraPair, Model, Param, Projection};
use medforge_text::rng::StableRng;

use crate::config::LoraConfig;
use crate::error::{Result, TrainError};
use crate::optim::{AdamState, AdamW};

/// One trainable tensor's place in the flat buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Lora { layer: usize, proj: Projection, a: Range<usize>, b: Range<usize> },
    Base { param: Param, range: Range<usize> },
}

/// The layout of the trainable values and their accumulated gradient.
pub struct Trainable {
    slots: Vec<Slot>,
    lora_index: HashMap<(usize, Projection), usize>,
    base_index: HashMap<Param, usize>,
    pub grads: Vec<f32>,
}

impl Trainable {
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The LoRA pairs of `model` (in layer, projection order).
    pub fn lora(model: &Model) -> Result<Trainable> {
        let mut t =
            Trainable { slots: Vec::new(), lora_index: HashMap::new(), base_index: HashMap::new(), grads: Vec::new() };
        let mut n = 0;
        for (li, layer) in model.layers().iter().enumerate() {
            for p in Projection::ALL {
                if let Some(pair) = layer.projection(p).lora() {
                    let (la, lb) = (pair.a().len(), pair.b().len());
                    t.lora_index.insert((li, p), t.slots.len());
                    t.slots.push(Slot::Lora { layer: li, proj: p, a: n..n + la, b: n + la..n + la + lb });
                    n += la + lb;
                }
            }
        }
        if n == 0 {
            return Err(TrainError::Config("the model has no LoRA pairs to train".into()));
        }
        t.grads = vec![0.0; n];
        Ok(t)
    }

    /// Every weight of `model` (full fine-tuning; f32 weights only).
    pub fn full(model: &Model) -> Result<Trainable> {
        let mut t =
            Trainable { slots: Vec::new(), lora_index: HashMap::new(), base_index: HashMap::new(), grads: Vec::new() };
        let mut n = 0;
        model.visit_params(&mut |param, v| {
            t.base_index.insert(param, t.slots.len());
            t.slots.push(Slot::Base { param, range: n..n + v.len() });
            n += v.len();
        })?;
        t.grads = vec![0.0; n];
        Ok(t)
    }

    pub fn zero_grads(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = 0.0);
    }

    /// One AdamW step over every trainable value at learning rate `lr`, with the accumulated gradient. Weight decay
    /// skips biases and norms, as Hugging Face's Trainer does.
    pub fn step(&self, model: &mut Model, opt: &AdamW, state: &mut AdamState, lr: f64) -> Result<()> {
        let c = opt.begin(state);
        let (m, v) = (&mut state.m, &mut state.v);
        let g = &self.grads;
        let lora_slots = self.slots.iter().filter_map(|s| match s {
            Slot::Lora { layer, proj, a, b } => Some((*layer, *proj, a.clone(), b.clone())),
            Slot::Base { .. } => None,
        });
        for (layer, proj, a, b) in lora_slots {
            let pair = model.layers_mut()[layer].projection_mut(proj).lora_mut().expect("layout from this model");
            opt.update(c, lr, true, pair.a_mut(), &g[a.clone()], &mut m[a.clone()], &mut v[a]);
            opt.update(c, lr, true, pair.b_mut(), &g[b.clone()], &mut m[b.clone()], &mut v[b]);
        }
        if !self.base_index.is_empty() {
            model.visit_params_mut(&mut |param, values| {
                let Slot::Base { range, .. } = &self.slots[self.base_index[&param]] else { unreachable!() };
                let decay = !matches!(param, Param::Bias(..) | Param::Norm(..) | Param::FinalNorm);
                opt.update(c, lr, decay, values, &g[range.clone()], &mut m[range.clone()], &mut v[range.clone()]);
            })?;
        }
        Ok(())
    }

    /// The trainable values, copied out in layout order (checkpoints and tests).
    pub fn values(&self, model: &Model) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.len()];
        for s in &self.slots {
            if let Slot::Lora { layer, proj, a, b } = s {
                let pair = model.layers()[*layer].projection(*proj).lora().expect("layout from this model");
                out[a.clone()].copy_from_slice(pair.a());
                out[b.clone()].copy_from_slice(pair.b());
            }
        }
        if !self.base_index.is_empty() {
            model.visit_params(&mut |param, values| {
                let Slot::Base { range, .. } = &self.slots[self.base_index[&param]] else { unreachable!() };
                out[range.clone()].copy_from_slice(values);
            })?;
        }
        Ok(out)
    }

    /// Put values saved by [`Trainable::values`] back into the model.
    pub fn restore(&self, model: &mut Model, values: &[f32]) -> Result<()> {
        if values.len() != self.len() {
            return Err(TrainError::Checkpoint(format!(
                "the checkpoint holds {} trainable values, this run trains {}",
                values.len(),
                self.len()
            )));
        }
        for s in &self.slots {
            if let Slot::Lora { layer, proj, a, b } = s {
                let pair = model.layers_mut()[*layer].projection_mut(*proj).lora_mut().expect("layout from this model");
                pair.a_mut().copy_from_slice(&values[a.clone()]);
                pair.b_mut().copy_from_slice(&values[b.clone()]);
            }
        }
        if !self.base_index.is_empty() {
            model.visit_params_mut(&mut |param, v| {
                let Slot::Base { range, .. } = &self.slots[self.base_index[&param]] else { unreachable!() };
                v.copy_from_slice(&values[range.clone()]);
            })?;
        }
        Ok(())
    }
}

impl GradSink for Trainable {
    fn lora(&mut self, layer: usize, proj: Projection) -> Option<(&mut [f32], &mut [f32])> {
        let Slot::Lora { a, b, .. } = &self.slots[*self.lora_index.get(&(layer, proj))?] else { return None };
        let (a, b) = (a.clone(), b.clone());
        // A precedes B in the buffer.
        let (head, tail) = self.grads.split_at_mut(b.start);
        Some((&mut head[a], &mut tail[..b.len()]))
    }

    fn base(&mut self, param: Param) -> Option<&mut [f32]> {
        let Slot::Base { range, .. } = &self.slots[*self.base_index.get(&param)?] else { return None };
        let r = range.clone();
        Some(&mut self.grads[r])
    }
}

/// Attach fresh LoRA pairs to every targeted projection with PEFT's initialisation: A Kaiming-uniform
/// (`U(±1/√in)`, PEFT's `kaiming_uniform_(a=√5)`), B zero, drawn from one seeded stream in layer, projection order.
/// The values differ from PEFT's for the same seed (another generator); the distribution is the same.
pub fn init_lora(model: &mut Model, cfg: &LoraConfig, seed: u64) -> Result<()> {
    let targets: Vec<Projection> = cfg
        .targets
        .iter()
        .map(|t| {
            Projection::from_module_name(t)
                .ok_or_else(|| TrainError::Config(format!("[train] lora.targets: `{t}` is not a projection")))
        })
        .collect::<Result<_>>()?;
    let mut rng = StableRng::from_seed_u64(seed);
    let scale = cfg.scale() as f32;
    for layer in model.layers_mut() {
        for p in Projection::ALL {
            if !targets.contains(&p) {
                continue;
            }
            let lin = layer.projection_mut(p);
            let (inp, out) = (lin.in_dim(), lin.out_dim());
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..cfg.r * inp).map(|_| ((rng.unit_f64() * 2.0 - 1.0) * bound) as f32).collect();
            lin.set_lora(LoraPair::new(cfg.r, inp, out, a, vec![0.0; out * cfg.r], scale)?)?;
        }
    }
    Ok(())
}

/// Check that an adapter loaded to start from covers exactly the configured targets with the configured rank and
/// scale (a mismatch would silently train something else).
pub fn check_adapter_matches(model: &Model, cfg: &LoraConfig, source: &str) -> Result<()> {
    let scale = cfg.scale() as f32;
    for (li, layer) in model.layers().iter().enumerate() {
        for p in Projection::ALL {
            let wanted = cfg.targets.iter().any(|t| t == p.module_name());
            match (layer.projection(p).lora(), wanted) {
                (Some(pair), true) => {
                    if pair.rank() != cfg.r || (pair.scale() - scale).abs() > 1e-6 * scale.abs() {
                        return Err(TrainError::Config(format!(
                            "{source}: layer {li} {} has rank {} and scale {}, [train.lora] says r = {} and scale {scale} \
                             (alpha {}, rslora {})",
                            p.module_name(),
                            pair.rank(),
                            pair.scale(),
                            cfg.r,
                            cfg.alpha,
                            cfg.rslora
                        )));
                    }
                }
                (None, true) => {
                    return Err(TrainError::Config(format!(
                        "{source}: no LoRA pair for target module `{}` (layer {li}); [train.lora] targets must be the \
                         adapter's target_modules",
                        p.module_name()
                    )))
                }
                (Some(_), false) => {
                    return Err(TrainError::Config(format!(
                        "{source}: the adapter adapts `{}`, which [train.lora] targets does not list",
                        p.module_name()
                    )))
                }
                (None, false) => {}
            }
        }
    }
    Ok(())
}
