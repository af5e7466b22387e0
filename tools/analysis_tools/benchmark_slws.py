"""Measure the training-step overhead of the SLWS hook on a Vim backbone.

Usage::

    python tools/analysis_tools/benchmark_slws.py --arch tiny --img 224 \
        --batch 8 --iters 10 [--layers 24] [--device cuda]

Runs forward + backward + AdamW step of a Vim classifier (backbone + linear
head, cross-entropy) without the hook, with the hook at ``P_L`` (the
ShuffleMamba default 0.5) and with every layer but the first forced to
shuffle (the worst case), and prints the median step time of each and the
relative overhead (the three settings take turns step by step). ShuffleMamba
claims < 2% of the training throughput. On a loaded machine the wall-clock
figures are noisy; the script also prints the share of the shuffle ops in the
profiled time of one step.
Timings are informative only (no test depends on them).
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

import mmssm  # noqa: F401
from mmssm.engine.hooks import SLWSHook
from mmssm.models.backbones import Vim


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--layers', type=int, default=None,
                        help='override the number of layers (smaller runs)')
    parser.add_argument('--img', type=int, default=224)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--prob', type=float, default=0.5)
    parser.add_argument('--device', default='cuda' if
                        torch.cuda.is_available() else 'cpu')
    return parser.parse_args()


def train_step(model, head, optimizer, images, labels):
    """One timed forward + backward + AdamW step."""
    if images.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    logits = head(model(images)[0])
    loss = nn.functional.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def benchmark(common, hook, iters, warmup):
    """Median step time of each setting; the settings take turns step by
    step, so that a load drift of the machine hits all of them alike."""
    settings = ('no hook', 'hook', 'forced')
    times = {name: [] for name in settings}
    for i in range(warmup + iters):
        for name in settings:
            if name == 'no hook':
                hook.clear()
            else:
                hook.draw(10**9)
                if name == 'forced':
                    hook._active = {k: k > 0 for k in range(len(hook.layers))}
            elapsed = train_step(*common)
            hook.clear()
            if i >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


SHUFFLE_OPS = ('aten::index_select', 'aten::index_add_', 'aten::index_add',
               'aten::randperm', 'aten::sort', 'aten::argsort')


def shuffle_share(common, hook):
    """Share of the shuffle ops (permutation, gathers and their backward) in
    the profiled CPU time of one step with every layer but the first
    shuffling: a figure that machine load does not distort."""
    from torch.profiler import profile
    hook.draw(10**9)
    hook._active = {k: k > 0 for k in range(len(hook.layers))}
    with profile() as prof:
        train_step(*common)
    hook.clear()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shuffle = sum(e.self_cpu_time_total for e in events
                  if e.key in SHUFFLE_OPS)
    return shuffle / total


def main():
    args = parse_args()
    arch = dict(Vim.arch_zoo[args.arch])
    if args.layers:
        arch['num_layers'] = args.layers
    torch.manual_seed(0)
    model = Vim(arch, img_size=args.img, out_type='cls_token').to(
        args.device).train()
    head = nn.Linear(arch['embed_dims'], 1000).to(args.device)
    optimizer = torch.optim.AdamW(
        list(model.parameters()) + list(head.parameters()), lr=1e-4)
    images = torch.randn(args.batch, 3, args.img, args.img,
                         device=args.device)
    labels = torch.randint(0, 1000, (args.batch, ), device=args.device)
    common = (model, head, optimizer, images, labels)
    hook = SLWSHook(prob=args.prob, seed=0)
    hook.attach(model)
    times = benchmark(common, hook, args.iters, args.warmup)
    share = shuffle_share(common, hook)
    hook.detach()
    base, with_hook, forced = (times['no hook'], times['hook'],
                               times['forced'])

    tokens = model.patch_embed.grid_size(args.img, args.img)
    print(f'Vim-{args.arch} {arch["num_layers"]} layers, {args.img}px '
          f'({tokens[0] * tokens[1] + 1} tokens), batch {args.batch}, '
          f'{args.device}, median of {args.iters} steps')
    print(f'{"setting":<34}{"step (s)":>10}{"overhead":>10}')
    print(f'{"no hook":<34}{base:>10.4f}{"":>10}')
    for name, value in ((f'SLWSHook P_L={args.prob}', with_hook),
                        ('SLWSHook, all layers but 1st', forced)):
        print(f'{name:<34}{value:>10.4f}{(value / base - 1) * 100:>9.2f}%')
    print(f'shuffle ops in the profiled CPU time of a step with all layers '
          f'but the first shuffling: {share * 100:.2f}%')


if __name__ == '__main__':
    main()
