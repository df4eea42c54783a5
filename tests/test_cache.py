"""The shared model cache with fake loaders: sharing, LRU eviction by bytes, pinning, concurrency."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import pytest

from mmdemo.errors import BusyError, ModelTooLargeError
from mmdemo.runtime.cache import ModelCache, ModelKey, measure_nbytes


class FakeModel:
    def __init__(self, name: str, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes


def key(name: str) -> ModelKey:
    return ModelKey(name, None, "cpu", "float32")


class CountingLoader:
    """Builds FakeModels and counts calls per name; can be slowed down."""

    def __init__(self, sizes: dict[str, int], delay: float = 0.0) -> None:
        self.sizes = sizes
        self.delay = delay
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, name: str):
        def load() -> FakeModel:
            with self.lock:
                self.calls[name] = self.calls.get(name, 0) + 1
            time.sleep(self.delay)
            return FakeModel(name, self.sizes[name])

        return load


def make_cache(budget: int, **kwargs) -> ModelCache:
    return ModelCache(budget, on_evict=gc.collect, **kwargs)


def test_same_key_is_loaded_once_and_shared():
    loader = CountingLoader({"a": 10})
    cache = make_cache(100)
    with cache.use(key("a"), loader("a")) as first:
        pass
    with cache.use(key("a"), loader("a")) as second:
        pass
    assert first is second
    assert loader.calls == {"a": 1}
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions) == (1, 1, 0)
    assert stats.entries[0].hits == 1 and stats.entries[0].nbytes == 10


def test_keys_differ_by_revision_device_and_dtype():
    loader = CountingLoader({"a": 10})
    cache = make_cache(100)
    for k in (key("a"), ModelKey("a", "v2", "cpu", "float32"), ModelKey("a", None, "cuda", "float32"),
              ModelKey("a", None, "cpu", "float16")):
        cache.get_or_load(k, loader("a"))
    assert loader.calls == {"a": 4}
    assert len(cache.stats().entries) == 4


def test_least_recently_used_is_evicted_first_by_bytes():
    loader = CountingLoader({"a": 40, "b": 40, "c": 40})
    cache = make_cache(100)
    cache.get_or_load(key("a"), loader("a"))
    cache.get_or_load(key("b"), loader("b"))
    cache.get_or_load(key("a"), loader("a"))  # a is now warmer than b
    cache.get_or_load(key("c"), loader("c"))  # 120 > 100: evict the coldest, b
    assert key("a") in cache and key("c") in cache and key("b") not in cache
    stats = cache.stats()
    assert stats.evictions == 1 and stats.used_bytes == 80
    assert [e.key.model_id for e in stats.entries] == ["a", "c"]


def test_estimate_makes_room_before_loading():
    loader = CountingLoader({"a": 60, "b": 60})
    cache = make_cache(100)
    cache.get_or_load(key("a"), loader("a"))
    seen_during_load = []

    def load_b():
        seen_during_load.append(key("a") in cache)
        return FakeModel("b", 60)

    cache.get_or_load(key("b"), load_b, estimate=60)
    assert seen_during_load == [False]  # a was evicted before b's weights were loaded


def test_a_model_that_grows_while_in_use_is_counted_and_colder_ones_make_room():
    """A request may leave its model bigger (explain keeps transposed weights): the size is measured again when the
    request ends, and colder unpinned entries are evicted to stay within the budget."""
    loader = CountingLoader({"a": 40, "b": 40})
    cache = make_cache(100)
    with cache.use(key("a"), loader("a")):
        pass
    with cache.use(key("b"), loader("b")) as model:
        model.nbytes = 70  # it grew
    stats = cache.stats()
    assert [(e.key.model_id, e.nbytes) for e in stats.entries] == [("b", 70)]
    assert stats.used_bytes == 70 and stats.evictions == 1


def test_entry_in_use_is_never_evicted():
    loader = CountingLoader({"a": 60, "b": 60})
    cache = make_cache(100, wait_seconds=0.3)
    with cache.use(key("a"), loader("a")):
        with pytest.raises(BusyError, match="try again"):
            cache.get_or_load(key("b"), loader("b"))
        assert key("a") in cache
    # Once released, the same load succeeds by evicting a.
    cache.get_or_load(key("b"), loader("b"))
    assert key("a") not in cache and key("b") in cache


def test_load_waits_for_a_running_request_to_release_memory():
    loader = CountingLoader({"a": 60, "b": 60})
    cache = make_cache(100, wait_seconds=5)
    entered = threading.Event()

    def hold_a():
        with cache.use(key("a"), loader("a")):
            entered.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold_a)
    holder.start()
    entered.wait()
    started = time.monotonic()
    with cache.use(key("b"), loader("b")) as model:
        assert model.name == "b"
    holder.join()
    assert time.monotonic() - started >= 0.2
    assert cache.stats().used_bytes <= 100


def test_model_larger_than_budget_is_refused_clearly():
    cache = make_cache(100)
    with pytest.raises(ModelTooLargeError, match=r"big/model needs .* memory budget .* MMDEMO_MEMORY_BUDGET"):
        cache.get_or_load(key("big/model"), lambda: FakeModel("big", 500))
    assert cache.stats().entries == ()


def test_concurrent_requests_load_once():
    loader = CountingLoader({"a": 10}, delay=0.2)
    cache = make_cache(100)
    results = []

    def request():
        with cache.use(key("a"), loader("a")) as model:
            results.append(model)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.calls == {"a": 1}
    assert len(results) == 8 and all(r is results[0] for r in results)
    stats = cache.stats()
    assert stats.misses == 1 and stats.hits == 7


def test_slow_load_does_not_block_other_models():
    cache = make_cache(100)
    slow_started = threading.Event()
    release_slow = threading.Event()

    def slow():
        slow_started.set()
        release_slow.wait(5)
        return FakeModel("slow", 10)

    thread = threading.Thread(target=lambda: cache.get_or_load(key("slow"), slow))
    thread.start()
    slow_started.wait()
    started = time.monotonic()
    cache.get_or_load(key("fast"), lambda: FakeModel("fast", 10))
    elapsed = time.monotonic() - started
    release_slow.set()
    thread.join()
    assert elapsed < 1.0
    assert key("slow") in cache and key("fast") in cache


def test_failed_load_is_reported_to_waiters_and_leaves_no_entry():
    cache = make_cache(100)
    calls = []

    def broken():
        calls.append(1)
        time.sleep(0.1)
        raise OSError("weights are corrupt")

    errors = []

    def request():
        try:
            cache.get_or_load(key("a"), broken)
        except OSError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["weights are corrupt"] * 4
    assert len(calls) == 1
    assert key("a") not in cache
    # The files are fixed: the next request loads it.
    cache.get_or_load(key("a"), lambda: FakeModel("a", 10))
    assert key("a") in cache


def test_eviction_drops_the_last_reference():
    cache = make_cache(100)
    cache.get_or_load(key("a"), lambda: FakeModel("a", 60))
    with cache.use(key("a"), lambda: None) as model:
        ref = weakref.ref(model)
    del model
    cache.get_or_load(key("b"), lambda: FakeModel("b", 60))
    gc.collect()
    assert ref() is None


def test_unload_and_clear():
    cache = make_cache(100)
    cache.get_or_load(key("a"), lambda: FakeModel("a", 10))
    cache.get_or_load(key("b"), lambda: FakeModel("b", 10))
    assert cache.unload(key("a")) is True
    assert cache.unload(key("a")) is False
    with cache.use(key("b"), lambda: None):
        with pytest.raises(BusyError, match="in use"):
            cache.unload(key("b"))
        assert cache.clear() == 0
    assert cache.clear() == 1
    assert cache.stats().used_bytes == 0 and cache.stats().evictions == 2


def test_stats_record_load_time_and_last_use():
    cache = make_cache(100)
    before = time.time()
    cache.get_or_load(key("a"), lambda: (time.sleep(0.05), FakeModel("a", 7))[1])
    (entry,) = cache.stats().entries
    assert entry.load_seconds >= 0.05
    assert entry.last_used >= before
    assert entry.nbytes == 7 and entry.in_use == 0
    assert entry.key.device == "cpu" and entry.key.dtype == "float32"


def test_measure_nbytes_counts_tied_weights_once():
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    module[1].weight = module[0].weight
    assert measure_nbytes(module) == 10 * 4 * 4


@pytest.mark.parametrize(("kind", "weight_bytes"), [(None, 4), ("fp16", 2), ("int8", 1)])
def test_module_nbytes_counts_quantized_weights_as_stored(kind, weight_bytes):
    torch = pytest.importorskip("torch")
    from mmdemo.models.loading import module_nbytes, quantize_linear

    model = torch.nn.Sequential(torch.nn.LayerNorm(64), torch.nn.Linear(64, 32))
    if kind:
        model = quantize_linear(model, kind)
    # LayerNorm weight and bias, then the Linear's weight as stored and its fp32 bias.
    assert module_nbytes(model) == 2 * 64 * 4 + 64 * 32 * weight_bytes + 32 * 4


def test_int8_layers_quantize_activations_to_8_bits_where_the_cpu_multiplies_them_exactly(monkeypatch):
    """torch's dynamic int8 Linear with the weights per output channel, its activations at 8 bits on a VNNI CPU and at
    7 bits elsewhere (as torch has it): each CPU gets the setting whose layer is the closer to fp32.

    With AVX512-VNNI fbgemm sums u8 x s8 products in int32, so the eighth bit only halves the activation rounding.
    Without it (AVX2, or AVX512 without VNNI) fbgemm adds each two neighbouring products into an int16 that saturates:
    8-bit activations (up to 255 x 127, twice) can overflow it, 7-bit ones (2 x 127 x 128 < 2**15) cannot."""
    torch = pytest.importorskip("torch")
    import copy

    from mmdemo.models import loading

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 64)).eval()
    x = torch.randn(16, 256)
    # all-positive activations and weights: every pair of neighbouring products is as large as it can be
    ones = torch.nn.Linear(64, 4, bias=False).eval()
    torch.nn.init.ones_(ones.weight)
    positive = torch.ones(2, 64)
    with torch.inference_mode():
        reference = model(x)
        int8 = loading.quantize_linear(copy.deepcopy(model), "int8")
        layers = [m for m in int8.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
        assert len(layers) == 2 and not any(isinstance(m, torch.nn.Linear) for m in int8.modules())
        assert layers[0].weight().qscheme() == torch.per_channel_affine
        vnni = loading.full_range_int8_activations()
        assert all(layer.reduce_range is not vnni for layer in layers)
        saturating = loading.quantize_linear(torch.nn.Sequential(copy.deepcopy(ones)), "int8")
        assert type(saturating[0]) is type(layers[0])
        expected = ones(positive)  # about 64 everywhere
        # the layers this CPU gets: close to fp32, and exact sums
        assert torch.allclose(int8(x), reference, atol=0.05)
        assert torch.allclose(saturating(positive), expected, rtol=0.02)
        outs, sums = {}, {}
        for reduce_range in (True, False):
            monkeypatch.setattr(type(layers[0]), "reduce_range", reduce_range)
            outs[reduce_range], sums[reduce_range] = int8(x), saturating(positive)
    errors = {reduce_range: (out - reference).abs().mean().item() for reduce_range, out in outs.items()}
    assert torch.allclose(outs[True], reference, atol=0.05)  # 7 bits: int8 on every CPU ...
    assert torch.allclose(sums[True], expected, rtol=0.02)  # ... and no sum saturates
    if vnni:
        assert torch.allclose(outs[False], reference, atol=0.05)  # int8 either way
        assert torch.allclose(sums[False], expected, rtol=0.02)
        assert errors[False] < 0.7 * errors[True], errors  # one more bit: about half the activation rounding
    elif torch.backends.quantized.engine in ("x86", "fbgemm"):  # fbgemm's AVX2 / AVX512 kernels: int16 pairs
        assert bool((sums[False] < 0.6 * expected).all()), sums[False]  # each pair stops at 2**15 - 1: about half
        assert errors[False] > errors[True], errors  # and on ordinary inputs 8 bits are the worse choice here


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_converted_layers_are_torch_quantize_dynamic_modules_with_the_same_outputs(tiny_model_dir, kind):
    torch = pytest.importorskip("torch")
    import copy
    import warnings

    import transformers
    from torch.ao.quantization import float16_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    from mmdemo.models.loading import _int8_linear_class, quantize_linear

    path = tiny_model_dir / "cardiffnlp/twitter-roberta-base-sentiment-latest"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    shared = torch.nn.Linear(8, 8)
    extra = torch.nn.ModuleDict({"a": shared, "b": shared, "attention": torch.nn.MultiheadAttention(8, 2)})
    torch_way = {"fp16": {"qconfig_spec": {torch.nn.Linear: float16_dynamic_qconfig}, "dtype": torch.float16},
                 "int8": {"qconfig_spec": {torch.nn.Linear: per_channel_dynamic_qconfig}, "dtype": torch.qint8,
                          "mapping": {torch.nn.Linear: _int8_linear_class()}}}[kind]  # the app's int8 layer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = quantize_dynamic(copy.deepcopy(model), **torch_way)
        reference_extra = quantize_dynamic(copy.deepcopy(extra), **torch_way)
    ours, ours_extra = quantize_linear(model, kind), quantize_linear(extra, kind)

    kinds = [type(m) for m in ours.modules()]
    assert kinds == [type(m) for m in reference.modules()]
    assert torch.nn.Linear not in kinds and any(issubclass(k, torch.ao.nn.quantized.dynamic.Linear) for k in kinds)
    assert type(ours_extra["attention"].out_proj) is type(reference_extra["attention"].out_proj)  # a subclass: kept
    assert isinstance(ours_extra["a"], torch.ao.nn.quantized.dynamic.Linear)
    assert ours_extra["a"] is ours_extra["b"]  # one layer in two places stays one layer
    ids = torch.tensor([[0, 5, 9, 14, 2]])
    with torch.inference_mode():
        assert torch.equal(ours(input_ids=ids).logits, reference(input_ids=ids).logits)
        x = torch.randn(3, 8)
        assert torch.equal(ours_extra["a"](x), reference_extra["a"](x))

    def plain(tensor):
        return tensor.dequantize() if tensor.is_quantized else tensor

    for mine, theirs in zip(ours.modules(), reference.modules(), strict=True):
        if isinstance(mine, torch.ao.nn.quantized.dynamic.Linear):
            assert (mine.in_features, mine.out_features) == (theirs.in_features, theirs.out_features)
            assert mine.weight().dtype == theirs.weight().dtype == {"fp16": torch.float, "int8": torch.qint8}[kind]
            assert torch.equal(plain(mine.weight()), plain(theirs.weight()))
            assert torch.equal(mine.bias(), theirs.bias())


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_a_quantized_model_keeps_nothing_of_its_mapped_file(tiny_model_dir, tmp_path, kind):
    """transformers maps a checkpoint and hands out views of it: once the Linear layers are converted, no tensor may
    still point into the file (BLIP's word embedding, tied to its Linear output layer, did), or its pages stay
    resident (`test_tied_weights_stay_tied_when_copied_off_the_file`). The model equals the one
    transformers makes by reading the file into memory (`disable_mmap`)."""
    torch = pytest.importorskip("torch")
    import transformers

    from mmdemo.models.loading import load_bundle, quantize_linear

    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs Linux's /proc/self/maps")
    import shutil

    path = tmp_path / "Salesforce/blip-vqa-base"  # a file of its own: other tests' models may map the shared one
    shutil.copytree(tiny_model_dir / "Salesforce/blip-vqa-base", path)
    weights = str(path / "model.safetensors")
    ours = load_bundle(path, device="cpu", dtype=torch.float32, allowed=frozenset({"BlipForQuestionAnswering"}),
                       quantize=kind).model
    gc.collect()
    assert weights not in maps.read_text()
    read = transformers.BlipForQuestionAnswering.from_pretrained(path, disable_mmap=True).eval()
    read = quantize_linear(read, kind)

    def state(model) -> dict:
        tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        for name, module in model.named_modules():
            if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
                weight, bias = module._weight_bias()
                tensors[f"{name}.packed"] = weight.dequantize() if weight.is_quantized else weight
                tensors[f"{name}.packed_bias"] = bias
        return tensors

    mine, theirs = state(ours), state(read)
    assert mine.keys() == theirs.keys() and any(name.endswith(".packed") for name in mine)
    assert all(torch.equal(mine[name], theirs[name]) for name in mine)


def test_tied_weights_stay_tied_when_copied_off_the_file():
    torch = pytest.importorskip("torch")
    from mmdemo.models.loading import _off_the_file

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 10),
                                torch.nn.Linear(4, 4))
    model[2].weight = model[0].weight
    model.register_buffer("shared", torch.arange(3.0))
    model[1].register_buffer("shared", model.shared)
    before = {name: tensor.data_ptr() for name, tensor in model.state_dict(keep_vars=True).items()}
    _off_the_file(model)
    assert model[2].weight is model[0].weight and model[1].shared is model.shared
    after = model.state_dict(keep_vars=True)
    # Copied: everything but a Linear weight no other module uses (the conversion copies those).
    assert [name for name, ptr in before.items() if after[name].data_ptr() == ptr] == ["3.weight"]
    assert torch.equal(model.shared, torch.arange(3.0))
