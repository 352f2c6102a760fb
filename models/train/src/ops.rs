//! Fused CPU ops with their backward passes: RMSNorm, rotary embedding,
//! masked attention softmax and token cross-entropy. Written with basic
//! tensor ops, each is a chain of small element-wise ops that allocate a
//! tensor apiece, forward and backward; at the model sizes trained here
//! that, not the matrix products, was most of a training step. And a
//! product with a constant weight, whose backward skips the weight's
//! gradient (candle's computes it even for a constant). Each is checked
//! against its basic-op form, values and gradients (tests below).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};

type Result<T> = candle_core::Result<T>;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 expected")
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => candle_core::bail!("{what}: contiguous input expected"),
    }
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

/// `x * w / sqrt(mean(x^2) + eps)` over the last dimension.
struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "train-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (
            f32_slice(xs, xl, "rms_norm x")?,
            f32_slice(ws, wl, "rms_norm w")?,
        );
        let n = w.len();
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let r = 1.0 / (xr.iter().map(|v| v * v).sum::<f32>() / n as f32 + self.eps).sqrt();
            for ((y, x), w) in yr.iter_mut().zip(xr).zip(w) {
                *y = x * r * w;
            }
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (xv, wv, gv) = (values(x)?, values(w)?, values(grad)?);
        let n = wv.len();
        let mut gx = vec![0f32; xv.len()];
        let mut gw = vec![0f32; n];
        for ((xr, gr), gxr) in xv
            .chunks_exact(n)
            .zip(gv.chunks_exact(n))
            .zip(gx.chunks_exact_mut(n))
        {
            let r = 1.0 / (xr.iter().map(|v| v * v).sum::<f32>() / n as f32 + self.eps).sqrt();
            // d/dx of x*r: r * (g' - xhat * mean(g' * xhat)), g' = g * w.
            let mut dot = 0f32;
            for j in 0..n {
                let xhat = xr[j] * r;
                gw[j] += gr[j] * xhat;
                dot += gr[j] * wv[j] * xhat;
            }
            let mean = dot / n as f32;
            for j in 0..n {
                gxr[j] = r * (gr[j] * wv[j] - xr[j] * r * mean);
            }
        }
        Ok((
            Some(Tensor::from_vec(gx, x.shape(), x.device())?),
            Some(Tensor::from_vec(gw, w.shape(), w.device())?),
        ))
    }
}

pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

/// Rotary embedding (rotate-half layout) of `[b, heads, n, hd]` with a
/// `[rows, n, hd]` table per position (`rows` 1 or `b`).
#[derive(Clone)]
pub struct Rope {
    cos: std::sync::Arc<Vec<f32>>,
    sin: std::sync::Arc<Vec<f32>>,
    rows: usize,
    n: usize,
    hd: usize,
}

impl Rope {
    /// Tables for `positions` (`rows` rows of `n` each), as the runtime
    /// computes them (f32).
    pub fn new(positions: &[usize], rows: usize, hd: usize, theta: f64) -> Self {
        let half = hd / 2;
        let freq: Vec<f32> = (0..half)
            .map(|j| 1.0 / (theta as f32).powf((2 * j) as f32 / hd as f32))
            .collect();
        let (mut cos, mut sin) = (
            vec![0f32; positions.len() * hd],
            vec![0f32; positions.len() * hd],
        );
        for (i, &p) in positions.iter().enumerate() {
            for (j, f) in freq.iter().enumerate() {
                let (s, c) = (p as f32 * f).sin_cos();
                for k in [j, j + half] {
                    cos[i * hd + k] = c;
                    sin[i * hd + k] = s;
                }
            }
        }
        Rope {
            cos: cos.into(),
            sin: sin.into(),
            rows,
            n: positions.len() / rows,
            hd,
        }
    }

    fn inverse(&self) -> Self {
        Rope {
            sin: self.sin.iter().map(|s| -s).collect::<Vec<_>>().into(),
            ..self.clone()
        }
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "train-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "rope")?;
        let (b, heads, n, hd) = l.shape().dims4()?;
        if hd != self.hd || n != self.n || (self.rows != 1 && self.rows != b) {
            candle_core::bail!(
                "rope: table {}x{}x{} for {:?}",
                self.rows,
                self.n,
                self.hd,
                l.shape()
            )
        }
        let half = hd / 2;
        let mut y = vec![0f32; x.len()];
        for bi in 0..b {
            let table = (bi % self.rows) * n * hd;
            for h in 0..heads {
                for p in 0..n {
                    let at = ((bi * heads + h) * n + p) * hd;
                    let (xr, yr) = (&x[at..at + hd], &mut y[at..at + hd]);
                    let (c, s) = (
                        &self.cos[table + p * hd..][..hd],
                        &self.sin[table + p * hd..][..hd],
                    );
                    for j in 0..half {
                        yr[j] = xr[j] * c[j] - xr[j + half] * s[j];
                        yr[j + half] = xr[j + half] * c[j + half] + xr[j] * s[j + half];
                    }
                }
            }
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // A rotation: its transpose is the rotation back.
        Ok(Some(grad.contiguous()?.apply_op1(self.inverse())?))
    }
}

pub fn rope(x: &Tensor, rope: &Rope) -> Result<Tensor> {
    x.contiguous()?.apply_op1(rope.clone())
}

/// Entries of an additive mask at or below this are skipped outright.
pub const MASKED: f32 = -1e9;

/// `softmax(scores * scale + mask)` over the last dimension; `scores`
/// `[b, h, q, k]`, `mask` `[mb, 1, q, k]` with `mb` 1 or `b`.
struct AttentionSoftmax {
    scale: f32,
}

impl CustomOp2 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "train-attention-softmax"
    }

    fn cpu_fwd(
        &self,
        ss: &CpuStorage,
        sl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (s, m) = (
            f32_slice(ss, sl, "softmax scores")?,
            f32_slice(ms, ml, "softmax mask")?,
        );
        let (b, h, q, k) = sl.shape().dims4()?;
        let (mb, _, mq, mk) = ml.shape().dims4()?;
        if (mb != 1 && mb != b) || mq != q || mk != k {
            candle_core::bail!("softmax: mask {:?} for scores {:?}", ml.shape(), sl.shape())
        }
        let mut y = vec![0f32; s.len()];
        for bi in 0..b {
            let mrows = &m[(bi % mb) * q * k..][..q * k];
            for hi in 0..h {
                let at = (bi * h + hi) * q * k;
                for (i, mrow) in mrows.chunks_exact(k).enumerate() {
                    let (srow, yrow) = (&s[at + i * k..][..k], &mut y[at + i * k..][..k]);
                    let mut max = f32::NEG_INFINITY;
                    for j in 0..k {
                        if mrow[j] > MASKED {
                            max = max.max(srow[j] * self.scale + mrow[j]);
                        }
                    }
                    let mut sum = 0f32;
                    for j in 0..k {
                        if mrow[j] > MASKED {
                            let e = (srow[j] * self.scale + mrow[j] - max).exp();
                            yrow[j] = e;
                            sum += e;
                        }
                    }
                    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
                    yrow.iter_mut().for_each(|v| *v *= inv);
                }
            }
        }
        Ok((CpuStorage::F32(y), sl.shape().clone()))
    }

    fn bwd(
        &self,
        scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (y, g) = (values(res)?, values(grad)?);
        let k = scores.dim(D::Minus1)?;
        let mut gs = vec![0f32; y.len()];
        for ((yr, gr), out) in y
            .chunks_exact(k)
            .zip(g.chunks_exact(k))
            .zip(gs.chunks_exact_mut(k))
        {
            let dot: f32 = yr.iter().zip(gr).map(|(y, g)| y * g).sum();
            for j in 0..k {
                out[j] = self.scale * yr[j] * (gr[j] - dot);
            }
        }
        Ok((
            Some(Tensor::from_vec(gs, scores.shape(), scores.device())?),
            None,
        ))
    }
}

pub fn attention_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    scores.contiguous()?.apply_op2(
        &mask.contiguous()?,
        AttentionSoftmax {
            scale: scale as f32,
        },
    )
}

/// Next-token cross-entropy of `[.., vocab]` logits against u32 targets
/// `[..]`, per position.
struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "train-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32_slice(ls, ll, "cross-entropy logits")?;
        let CpuStorage::U32(t) = ts else {
            candle_core::bail!("cross-entropy: u32 targets expected")
        };
        let Some((start, end)) = tl.contiguous_offsets() else {
            candle_core::bail!("cross-entropy: contiguous targets expected")
        };
        let targets = &t[start..end];
        let v = ll.shape().dims().last().copied().unwrap_or(1);
        let loss: Vec<f32> = logits
            .chunks_exact(v)
            .zip(targets)
            .map(|(row, &t)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = row.iter().map(|x| (x - max).exp()).sum::<f32>().ln() + max;
                lse - row[t as usize]
            })
            .collect();
        Ok((CpuStorage::F32(loss), tl.shape().clone()))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (l, g) = (values(logits)?, values(grad)?);
        let t = targets.flatten_all()?.to_vec1::<u32>()?;
        let v = logits.dim(D::Minus1)?;
        let mut gl = vec![0f32; l.len()];
        for (((row, out), &t), &g) in l
            .chunks_exact(v)
            .zip(gl.chunks_exact_mut(v))
            .zip(&t)
            .zip(&g)
        {
            if g == 0.0 {
                continue;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
            for (o, x) in out.iter_mut().zip(row) {
                *o = g * (x - max).exp() / sum;
            }
            out[t as usize] -= g;
        }
        Ok((
            Some(Tensor::from_vec(gl, logits.shape(), logits.device())?),
            None,
        ))
    }
}

/// Cross-entropy per position: `logits` `[.., vocab]`, `targets` `[..]`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}

/// `x · wᵀ` for a constant `w` (`[out, in]`), `x` `[rows, in]`.
struct ConstLinear {
    w: Tensor,
}

impl CustomOp1 for ConstLinear {
    fn name(&self) -> &'static str {
        "train-const-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = Tensor::from_slice(
            f32_slice(s, l, "const_linear")?,
            l.shape(),
            &self.w.device().clone(),
        )?;
        let y = x.matmul(&self.w.t()?)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1()?),
            y.shape().clone(),
        ))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x · wᵀ` (`x` `[rows, in]`, `w` `[out, in]`) where `w` is a constant:
/// only `x` gets a gradient.
pub fn const_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ConstLinear {
        w: w.detach().contiguous()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Var {
        let mut rng = crate::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// `fused` and `reference` agree on values and on the gradients of a
    /// weighted sum with respect to `vars`.
    fn agree(vars: &[&Var], fused: impl Fn() -> Tensor, reference: impl Fn() -> Tensor) {
        let weights = random(fused().dims(), 99);
        let (f, r) = (fused(), reference());
        let diff = (&f - &r).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "values differ");
        let gf = (f * weights.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gr = (r * weights.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in vars {
            let (a, b) = (
                gf.get(v.as_tensor()).unwrap(),
                gr.get(v.as_tensor()).unwrap(),
            );
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "gradients differ");
        }
    }

    #[test]
    fn const_linear_matches_matmul() {
        let (x, w) = (random(&[5, 8], 6), random(&[3, 8], 7));
        agree(
            &[&x],
            || const_linear(x.as_tensor(), w.as_tensor()).unwrap(),
            || x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap(),
        );
        let g = const_linear(x.as_tensor(), w.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(w.as_tensor()).is_none(), "the weight is a constant");
    }

    #[test]
    fn rms_norm_matches_basic_ops() {
        let (x, w) = (random(&[2, 3, 8], 1), random(&[8], 2));
        agree(
            &[&x, &w],
            || rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap(),
            || {
                let x = x.as_tensor();
                let var = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                let r = (var + 1e-6).unwrap().sqrt().unwrap();
                x.broadcast_div(&r)
                    .unwrap()
                    .broadcast_mul(w.as_tensor())
                    .unwrap()
            },
        );
    }

    #[test]
    fn rope_matches_basic_ops() {
        let x = random(&[2, 3, 5, 8], 3);
        // Per-row positions, as depth 2 uses them.
        let positions = [0, 4, 7, 9, 20, 1, 2, 3, 5, 6];
        let table = Rope::new(&positions, 2, 8, 1e4);
        let cos = Tensor::from_vec(table.cos.to_vec(), (2, 1, 5, 8), &Device::Cpu).unwrap();
        let sin = Tensor::from_vec(table.sin.to_vec(), (2, 1, 5, 8), &Device::Cpu).unwrap();
        agree(
            &[&x],
            || rope(x.as_tensor(), &table).unwrap(),
            || {
                let x = x.as_tensor();
                let x1 = x.narrow(D::Minus1, 0, 4).unwrap();
                let x2 = x.narrow(D::Minus1, 4, 4).unwrap();
                let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
                (x.broadcast_mul(&cos).unwrap() + rotated.broadcast_mul(&sin).unwrap()).unwrap()
            },
        );
    }

    #[test]
    fn attention_softmax_matches_basic_ops() {
        let s = random(&[2, 3, 4, 6], 4);
        let mask: Vec<f32> = (0..2 * 4 * 6)
            .map(|i| {
                if (i * 7) % 5 == 0 && i % 6 != 0 {
                    MASKED
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (2, 1, 4, 6), &Device::Cpu).unwrap();
        agree(
            &[&s],
            || attention_softmax(s.as_tensor(), &mask, 0.5).unwrap(),
            || {
                let z = (s.as_tensor() * 0.5).unwrap().broadcast_add(&mask).unwrap();
                candle_nn::ops::softmax(&z, D::Minus1).unwrap()
            },
        );
    }

    #[test]
    fn cross_entropy_matches_basic_ops() {
        let l = random(&[2, 3, 7], 5);
        let t = Tensor::from_vec(vec![0u32, 6, 3, 2, 2, 5], (2, 3), &Device::Cpu).unwrap();
        agree(
            &[&l],
            || cross_entropy(l.as_tensor(), &t).unwrap(),
            || {
                let l = l.as_tensor();
                let lse = l
                    .exp()
                    .unwrap()
                    .sum_keepdim(D::Minus1)
                    .unwrap()
                    .log()
                    .unwrap();
                let picked = l
                    .gather(&t.unsqueeze(D::Minus1).unwrap(), D::Minus1)
                    .unwrap();
                (lse - picked).unwrap().squeeze(D::Minus1).unwrap()
            },
        );
    }
}
