"""PyTorch reference for the training-throughput benchmark: the same KWT (PostNorm, bias-free
QKV, LayerNorm+Linear head), the same AdamW step with label smoothing, on random 98x40 inputs.

    python3 pytorch_kwt.py --preset kwt-1 --batch-size 32 --steps 20 --warmup 3 [--device cuda]

Prints one line: samples per second. Compare with
    nas bench train --preset kwt-1 --batch-size 32 --steps 20 --warmup 3
on the same machine.
"""
import argparse
import time

import torch
import torch.nn as nn

PRESETS = {  # dim, depth, heads, dim_head, mlp_dim
    "kwt-1": (64, 12, 1, 64, 256),
    "kwt-2": (128, 12, 2, 64, 512),
    "kwt-3": (192, 12, 3, 64, 768),
    "kwt-tiny": (32, 2, 2, 16, 64),
}


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Linear(heads * dim_head, dim)

    def forward(self, x):
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-1, -2)) * self.dim_head ** -0.5
        ctx = attn.softmax(-1) @ v
        return self.out(ctx.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, dim, heads, dim_head, mlp_dim):
        super().__init__()
        self.attn = Attention(dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):  # PostNorm, as KWT
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class Kwt(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, mlp_dim, frames=98, features=40, classes=12):
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, frames + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, dim_head, mlp_dim) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    def forward(self, x):
        x = self.embed(x)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.blocks(x)[:, 0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="kwt-1")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = Kwt(*PRESETS[a.preset]).to(dev)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(a.batch_size, 98, 40, device=dev)
    y = torch.randint(0, 12, (a.batch_size,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # a host sync per step, as the Rust trainer reads its loss

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"pytorch {torch.__version__} {a.preset} ({params} params) {a.device} batch {a.batch_size} "
          f"threads {torch.get_num_threads()}: {a.steps * a.batch_size / dt:.1f} samples/s")


if __name__ == "__main__":
    main()
