"""Bake the pruning masks stored in a checkpoint into plain weights.

Usage::

    python tools/model_converters/prune2dense.py IN OUT [--config CONFIG] \
        [--full-model MODEL.pt] [--bench H W [--bench-runs N]]

* Unstructured masks (``checkpoint['mmssm_pruning']``, written by
  :class:`~mmssm.engine.hooks.MagnitudePruningHook` /
  :class:`~mmssm.engine.hooks.IterativePruningHook`): ``weight *= mask`` for
  every masked layer (the hooks store masked weights already; this makes sure
  and drops the masks).
* Structured channel masks (``checkpoint['mmssm_early_bird']``, the ticket
  of :class:`~mmssm.engine.hooks.EarlyBirdHook`, e.g. its
  ``early_bird_ticket.pth``): the masked model is the model whose pruned
  norm channels have scale and shift 0 (they output 0). With ``--config``
  the model is built and, where it is safe, the channels are physically
  removed: a ``Conv``/``Linear`` (groups 1) followed, inside the same
  ``nn.Sequential`` (or of a ``channel_prune_chains`` entry a module
  declares for its forward), by its ``BatchNorm``, then only activations
  that map 0 to 0 (ReLU, ReLU6, LeakyReLU, GELU, SiLU, Hardswish, Tanh,
  ELU, Mish, Identity, Dropout), then a ``Conv``/``Linear`` (groups 1) reading those
  channels: the producer's output channels, the norm's channels and
  statistics and the consumer's input channels are cut. Everywhere else
  (LayerNorm, whose statistics span all channels; norms not in such a chain;
  a norm that would lose every channel; or without ``--config``) the channels
  are only zeroed, and the tool says so per layer.

OUT holds ``{'meta', 'state_dict'}`` only (no optimizer state, no masks);
``meta['prune2dense']`` lists what was done and the new shapes. A state dict
with removed channels no longer fits the config's model; ``--full-model``
also saves the pruned ``nn.Module`` itself (``torch.load(...,
weights_only=False)``). The parameter count before and after (and the
non-zero count) is printed.

``--bench H W`` (with ``--config`` and channel masks) also measures the
speed the removal buys: the masked model (channels zeroed, full width) and
the pruned one, batch 1, ``H x W`` random input, ``torch.no_grad()``, the
median of ``--bench-runs`` forwards each after one warm-up forward, the two
models interleaved run by run (so a load change hits both alike); it times
``extract_feat`` where the model has one (mmdet/mmseg/mmpretrain models: the
backbone and neck), else ``forward``. Printed: both medians and their ratio,
stored in ``meta['prune2dense']['bench']``. Unstructured masks change no
shape, so they buy no speed on dense kernels and are not timed.
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time
from collections import OrderedDict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import mmssm  # noqa: E402,F401
from mmssm.engine.hooks.pruning import (EARLY_BIRD_KEY,  # noqa: E402
                                        PRUNING_KEY, apply_channel_masks,
                                        unwrap)
from mmssm.utils.checkpoint import (load_checkpoint_file,  # noqa: E402
                                    unwrap_state_dict)

ZERO_PRESERVING = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU,
                   nn.Hardswish, nn.Tanh, nn.ELU, nn.Mish, nn.Identity,
                   nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.modules.batchnorm._BatchNorm, )


def _is_dense(m) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, _CONV)
                                        and m.groups == 1)


def _out_channels(m):
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _in_channels(m):
    return m.in_features if isinstance(m, nn.Linear) else m.in_channels


def _cut(param, keep, dim):
    return nn.Parameter(param.detach().index_select(dim, keep).clone(),
                        requires_grad=param.requires_grad)


def _cut_producer(m, keep):
    m.weight = _cut(m.weight, keep, 0)
    if m.bias is not None:
        m.bias = _cut(m.bias, keep, 0)
    if isinstance(m, nn.Linear):
        m.out_features = len(keep)
    else:
        m.out_channels = len(keep)


def _cut_norm(m, keep):
    m.weight = _cut(m.weight, keep, 0)
    m.bias = _cut(m.bias, keep, 0)
    for buf in ('running_mean', 'running_var'):
        if getattr(m, buf, None) is not None:
            setattr(m, buf, getattr(m, buf).index_select(0, keep).clone())
    m.num_features = len(keep)


def _cut_consumer(m, keep):
    m.weight = _cut(m.weight, keep, 1)
    if isinstance(m, nn.Linear):
        m.in_features = len(keep)
    else:
        m.in_channels = len(keep)


def _sequences(model: nn.Module):
    """``(prefix, [(name, module), ...])`` for every run of modules that a
    forward applies one after the other: the children of each plain
    ``nn.Sequential``, and each ``channel_prune_chains`` entry (a tuple of
    child attribute names) that a module declares for its own forward (e.g.
    :class:`mmssm.models.backbones.mambavision.MambaVisionConvBlock`:
    ``('conv1', 'norm1', 'act1', 'conv2')``)."""
    for name, mod in unwrap(model).named_modules():
        if type(mod) is nn.Sequential:
            yield name, list(mod.named_children())
        for chain in getattr(mod, 'channel_prune_chains', ()) or ():
            yield name, [(c, getattr(mod, c)) for c in chain]


def find_removable(model: nn.Module, masks) -> 'OrderedDict':
    """``norm name -> (producer, norm, consumer)`` for the masked BatchNorms
    sitting in a safe ``Conv/Linear -> BN -> zero-preserving ... ->
    Conv/Linear`` chain of one ``nn.Sequential`` or of a declared
    ``channel_prune_chains`` entry (see :func:`_sequences`)."""
    out = OrderedDict()
    for seq_name, children in _sequences(model):
        for i in range(len(children) - 2):
            (_, prod), (nname, norm) = children[i], children[i + 1]
            full = f'{seq_name}.{nname}' if seq_name else nname
            if full not in masks or not isinstance(norm, _BN):
                continue
            if not _is_dense(prod) or norm.weight is None:
                continue
            j = i + 2
            while j < len(children) and isinstance(children[j][1],
                                                   ZERO_PRESERVING):
                j += 1
            if j >= len(children) or not _is_dense(children[j][1]):
                continue
            cons = children[j][1]
            c = norm.num_features
            if isinstance(prod, nn.Linear) != isinstance(cons, nn.Linear):
                continue
            if _out_channels(prod) != c or _in_channels(cons) != c:
                continue
            if int(masks[full].sum()) == 0:
                continue
            out[full] = (prod, norm, cons)
    return out


def prune_model(model: nn.Module, masks) -> dict:
    """Apply channel ``masks`` (norm name -> bool per channel) to ``model``
    in place: zero every masked channel, then remove the channels of the
    safe chains. Returns ``{'removed': {name: (before, after)},
    'zeroed': [name, ...]}``."""
    apply_channel_masks(model, masks)
    chains = find_removable(model, masks)
    removed = OrderedDict()
    with torch.no_grad():
        for name, (prod, norm, cons) in chains.items():
            keep = torch.nonzero(masks[name].to(norm.weight.device)).flatten()
            before = norm.num_features
            _cut_producer(prod, keep)
            _cut_norm(norm, keep)
            _cut_consumer(cons, keep)
            removed[name] = (before, len(keep))
    zeroed = [n for n in masks if n not in removed]
    return dict(removed=removed, zeroed=zeroed)


def count_params(state_dict) -> tuple:
    """``(parameters, non-zero parameters)`` of the floating-point entries
    of a state dict that are not norm statistics."""
    total = nonzero = 0
    for k, v in state_dict.items():
        if not torch.is_floating_point(v) or k.endswith(
            ('running_mean', 'running_var')):
            continue
        total += v.numel()
        nonzero += int((v != 0).sum())
    return total, nonzero


def convert(checkpoint: dict, model: nn.Module = None, log=print):
    """The ``{'meta', 'state_dict'}`` of ``checkpoint`` with its masks baked
    in (and the pruned model when ``model`` is given, else None)."""
    state_dict = OrderedDict(
        (k, v.clone()) for k, v in unwrap_state_dict(checkpoint).items())
    before = count_params(state_dict)
    info = OrderedDict()
    unstructured = (checkpoint.get(PRUNING_KEY) or {}).get('masks')
    if unstructured:
        for name, mask in unstructured.items():
            key = f'{name}.weight'
            if key not in state_dict:
                raise KeyError(f'prune2dense: mask of {name!r} but no '
                               f'{key!r} in the state dict')
            state_dict[key] = state_dict[key] * mask.to(state_dict[key])
        info['unstructured'] = list(unstructured)
        log(f'baked {len(unstructured)} unstructured weight masks')
    structured = (checkpoint.get(EARLY_BIRD_KEY) or {}).get('masks')
    if structured:
        if model is None:
            for name, mask in structured.items():
                for key in (f'{name}.weight', f'{name}.bias'):
                    if key in state_dict:
                        state_dict[key] = state_dict[key] * mask.to(
                            state_dict[key])
            info['zeroed'] = list(structured)
            log(f'{len(structured)} channel masks: channels zeroed, not '
                'removed (no --config, the model structure is unknown)')
        else:
            unwrap(model).load_state_dict(state_dict, strict=True)
            res = prune_model(model, structured)
            state_dict = OrderedDict(
                (k, v.detach().cpu())
                for k, v in unwrap(model).state_dict().items())
            info['removed'] = OrderedDict(
                (k, list(v)) for k, v in res['removed'].items())
            info['zeroed'] = res['zeroed']
            for name, (b, a) in res['removed'].items():
                log(f'{name}: {b} -> {a} channels (removed, with the '
                    'producing and the consuming layer)')
            for name in res['zeroed']:
                log(f'{name}: channels zeroed, not removed (not in a '
                    'Conv/Linear -> BatchNorm -> activation -> Conv/Linear '
                    'chain of one nn.Sequential or of a declared '
                    'channel_prune_chains, or a LayerNorm)')
            info['shapes'] = OrderedDict(
                (k, list(v.shape)) for k, v in state_dict.items())
    if not unstructured and not structured:
        log('the checkpoint holds no pruning masks; weights unchanged')
    after = count_params(state_dict)
    info['params_before'], info['nonzero_before'] = before
    info['params_after'], info['nonzero_after'] = after
    log(f'parameters: {before[0]} -> {after[0]}; non-zero: {before[1]} -> '
        f'{after[1]}')
    meta = dict(checkpoint.get('meta') or {})
    meta['prune2dense'] = info
    return dict(meta=meta, state_dict=state_dict), (
        model if structured and model is not None else None)


def _timed_call(model: nn.Module):
    """The callable :func:`bench` times: ``extract_feat`` if the model has
    one, else the model itself."""
    fn = getattr(unwrap(model), 'extract_feat', None)
    return fn if callable(fn) else model


def bench(masked: nn.Module, pruned: nn.Module, size, runs: int = 5,
          clock=time.perf_counter) -> dict:
    """Median forward time of ``masked`` and ``pruned`` on one random
    ``(1, 3, H, W)`` image (one warm-up forward each, then ``runs`` timed
    forwards, the models alternating), in milliseconds, and
    ``speedup = masked / pruned``."""
    if runs < 1:
        raise ValueError(f'bench: runs must be >= 1, got {runs}')
    h, w = size
    x = torch.randn(1, 3, int(h), int(w))
    calls = [_timed_call(masked.eval()), _timed_call(pruned.eval())]
    times = ([], [])
    with torch.no_grad():
        for fn in calls:
            fn(x)
        for _ in range(runs):
            for fn, out in zip(calls, times):
                t0 = clock()
                fn(x)
                out.append(clock() - t0)
    before = statistics.median(times[0]) * 1e3
    after = statistics.median(times[1]) * 1e3
    return dict(size=[int(h), int(w)], runs=runs, masked_ms=before,
                pruned_ms=after, speedup=before / after if after else None)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', metavar='IN')
    parser.add_argument('dst', metavar='OUT')
    parser.add_argument('--config', help='the model\'s config: lets channel '
                        'masks remove channels where it is safe')
    parser.add_argument('--full-model', metavar='PATH',
                        help='also torch.save the pruned nn.Module here '
                        '(with --config)')
    parser.add_argument('--bench', nargs=2, type=int, metavar=('H', 'W'),
                        help='time the masked and the pruned model on an '
                        'H x W input (with --config and channel masks)')
    parser.add_argument('--bench-runs', type=int, default=5, metavar='N',
                        help='timed forwards per model (default 5)')
    args = parser.parse_args(argv)
    if args.bench and not args.config:
        parser.error('--bench needs --config (the model to time)')
    if args.bench and (min(args.bench) < 1 or args.bench_runs < 1):
        parser.error('--bench H W must be positive and --bench-runs >= 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    ckpt = load_checkpoint_file(args.src)
    model = None
    if args.config:
        from mmssm.apis import build_model
        model = build_model(args.config)
    masked = None
    if args.bench:
        if not (ckpt.get(EARLY_BIRD_KEY) or {}).get('masks'):
            raise SystemExit('--bench: the checkpoint holds no channel masks '
                             '(unstructured masks change no shape)')
        masked = copy.deepcopy(model)
    out, pruned = convert(ckpt, model)
    if masked is not None:
        # the masked model: the same weights, pruned channels zeroed
        unwrap(masked).load_state_dict(unwrap_state_dict(ckpt), strict=True)
        apply_channel_masks(masked, ckpt[EARLY_BIRD_KEY]['masks'])
        res = bench(masked, pruned, args.bench, args.bench_runs)
        out['meta']['prune2dense']['bench'] = res
        print(f'speed at {args.bench[0]}x{args.bench[1]}, batch 1, median of '
              f'{res["runs"]}: masked {res["masked_ms"]:.2f} ms, pruned '
              f'{res["pruned_ms"]:.2f} ms ({res["speedup"]:.2f}x)')
    torch.save(out, args.dst)
    print(f'wrote {args.dst}')
    if args.full_model:
        if pruned is None:
            raise SystemExit('--full-model needs --config and channel masks')
        torch.save(pruned, args.full_model)
        print(f'wrote {args.full_model}')
    return out


if __name__ == '__main__':
    main()
