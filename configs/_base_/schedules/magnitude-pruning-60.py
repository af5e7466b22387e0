# Dynamic magnitude pruning to 60 % sparsity, the best schedule of
# papers/improving-ssm-vim-mambavision.txt (seed 002), for the pruned demo
# configs, which add their iterations (`begin`, `end`, `interval`):
# unstructured masks on every Conv and Linear weight of the model, ranked
# globally by |w|, the sparsity following a cosine from 0 at `begin` to 60 %
# at `end`, the first and the last selected layer at half of it ('auto'
# exemption). README, "Pruning".
magnitude_pruning_60 = dict(
    type='MagnitudePruningHook',
    target=0.6,
    scope='global',
    criterion='magnitude',
    layer_types=('Linear', 'Conv'),
    exempt='auto',
    fraction=0.5)
