"""ByteLM: chunked forward == recurrent stepping, generation (greedy, EOS, seeded sampling), sampling, a short fit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aegir.models.lm import ByteLM, sample_next

VOCAB = 256


def perturb_(module: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> None:
    """Add noise to every parameter: zero-init output/value layers would otherwise make each block an identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def make_lm(tie_embeddings: bool = True) -> ByteLM:
    torch.manual_seed(0)
    model = ByteLM(VOCAB, d_model=64, n_layers=2, head_size=32, tie_embeddings=tie_embeddings)
    perturb_(model, scale=0.1)
    return model.eval()


def greedy_by_full_recompute(model: ByteLM, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    """Oracle: re-run the whole sequence for every new token (no recurrent state reuse)."""
    ids = prompt
    with torch.no_grad():
        for _ in range(n_new):
            logits, _ = model(ids)
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


def test_shapes_and_parameter_count() -> None:
    tied, untied = ByteLM(VOCAB, 64, 2, head_size=32), ByteLM(VOCAB, 64, 2, head_size=32, tie_embeddings=False)
    logits, state = tied(torch.randint(0, VOCAB, (3, 11)))
    assert logits.shape == (3, 11, VOCAB) and state.wkv.shape == (2, 3, 2, 32, 32)
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 64
    hidden = torch.randn(4, 64)
    assert torch.equal(tied.logits(hidden), F.linear(tied.ln_out(hidden), tied.emb.weight))  # head is the embedding
    assert tied.emb.weight.abs().max() <= 1e-4


def test_untied_head_init_gain() -> None:
    model = ByteLM(512, 128, 1, head_size=32, tie_embeddings=False)
    gain = 0.5 * math.sqrt(512 / 128)
    w = model.head.weight  # [V, C] with V > C: orthonormal columns scaled by gain
    assert torch.allclose(w.T @ w, gain**2 * torch.eye(128), atol=1e-4)


@pytest.mark.parametrize("tie", [True, False])
def test_chunked_forward_equals_stepping(tie: bool) -> None:
    model = make_lm(tie)
    ids = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, _ = model(ids)
        state = model.initial_state(2)
        stepped = []
        for t in range(ids.shape[1]):
            logits_t, state = model.step(ids[:, t], state)
            stepped.append(logits_t)
    assert logits.std() > 0.1  # not vacuous
    assert (torch.stack(stepped, dim=1) - logits).abs().max() < 1e-4


def test_greedy_generate_matches_full_recompute_and_is_deterministic() -> None:
    model = make_lm()
    prompt = torch.randint(0, VOCAB, (3, 9), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, max_new_tokens=12, temperature=0.0)
    assert out.shape == (3, 21) and out.dtype == torch.long
    assert torch.equal(out[:, :9], prompt)
    assert torch.equal(out, model.generate(prompt, max_new_tokens=12, temperature=0.0))
    assert torch.equal(out, greedy_by_full_recompute(model, prompt, 12))
    assert torch.equal(model.generate(prompt, max_new_tokens=0), prompt)


def test_generate_pads_after_eos_and_stops_when_all_done() -> None:
    model = make_lm()
    prompt = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(3))
    free = model.generate(prompt, max_new_tokens=10, temperature=0.0)
    eos = int(free[0, 5 + 3])  # row 0 emits this token at its 4th new position
    out = model.generate(prompt, max_new_tokens=10, temperature=0.0, eos_id=eos)
    first_eos_row0 = int((free[0, 5:] == eos).nonzero()[0])
    assert (out[0, 5 + first_eos_row0 :] == eos).all()
    assert torch.equal(out[0, : 5 + first_eos_row0], free[0, : 5 + first_eos_row0])
    for row in range(2):  # rows without EOS in the free run continue unchanged
        hits = (free[row, 5:] == eos).nonzero()
        stop = 5 + (int(hits[0]) if len(hits) else out.shape[1] - 5)
        assert torch.equal(out[row, :stop], free[row, :stop])
    single = model.generate(prompt[:1], max_new_tokens=10, temperature=0.0, eos_id=int(free[0, 5]))
    assert single.shape == (1, 6)  # every row done after one token: no further steps


def test_seeded_sampling_is_reproducible() -> None:
    model = make_lm()
    prompt = torch.randint(0, VOCAB, (2, 4), generator=torch.Generator().manual_seed(4))

    def run(seed: int) -> torch.Tensor:
        return model.generate(prompt, 16, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_sample_next_greedy_and_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    assert sample_next(logits, temperature=0.0).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, 1.0, top_p=0.5, generator=gen) for _ in range(50)])
    assert (draws == torch.tensor([1, 0])).all()  # the top token alone reaches the mass
    draws = torch.stack([sample_next(logits, 1.0, top_p=0.75, generator=gen) for _ in range(200)])
    assert set(draws[:, 0].tolist()) == {1, 2}  # 0.6 < 0.75 <= 0.6 + 0.3: the 0.1 token is cut
    assert set(draws[:, 1].tolist()) == {0, 2}  # 0.5 < 0.75 <= 0.5 + 0.3: the 0.2 token is cut
    with pytest.raises(ValueError):
        sample_next(logits, temperature=-1.0)
    with pytest.raises(ValueError):
        sample_next(logits, top_p=0.0)


def test_generate_rejects_empty_prompt() -> None:
    with pytest.raises(ValueError, match="T0 >= 1"):
        make_lm().generate(torch.zeros(1, 0, dtype=torch.long), 3)


def test_short_fit_descends_well_below_uniform() -> None:
    """Tied embedding with the U(±1e-4) init starts at uniform logits and still learns a repeated string fast."""
    torch.manual_seed(0)
    model = ByteLM(VOCAB, d_model=64, n_layers=2, head_size=32)
    data = torch.tensor(list(b"the quick brown fox jumps over the lazy dog. " * 8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        starts = torch.randint(0, len(data) - 49, (4,), generator=gen)
        batch = torch.stack([data[s : s + 49] for s in starts.tolist()])
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(VOCAB), abs=0.05)
    assert sum(losses[-5:]) / 5 < 1.0


@pytest.mark.parametrize("fails_at", ["wrap", "call"])
def test_compile_step_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, fails_at: str) -> None:
    """model.compile_step where torch.compile is unavailable (wrap) or a compilation fails (call): one warning, then
    the eager step's numbers. No real compilation here (minutes on a CPU); the bench measures the compiled step."""
    from aegir.models import lm

    def broken_compile(fn: object, **_: object) -> object:
        if fails_at == "wrap":
            raise RuntimeError("torch.compile is not supported here")

        def run(*args: object) -> object:
            raise RuntimeError("no working C++ compiler")

        return run

    lm.compiled_step.cache_clear()
    monkeypatch.setattr(torch, "compile", broken_compile)
    try:
        model = ByteLM(300, 64, 2, head_size=32, compile_step=True)
        state, ids = model.initial_state(2), torch.tensor([1, 2])
        with torch.no_grad():
            with pytest.warns(UserWarning, match="compile_step"):
                logits, _ = model.step(ids, state)
            again, _ = model.step(ids, state)  # the fallback sticks, without a second warning
            model.compile_step = False
            eager, _ = model.step(ids, state)
        assert torch.equal(logits, eager) and torch.equal(again, eager)
    finally:
        lm.compiled_step.cache_clear()


@pytest.mark.slow
def test_compiled_step_matches_the_eager_step() -> None:
    """A real compilation (about 10-20 s on a CPU): the code that runs only under torch.compile (the stacked
    per-token vectors of `wkv_step_fused`, no out= buffer) gives the eager step's logits and state within 1e-5,
    over several steps."""
    from aegir.models import lm

    lm.compiled_step.cache_clear()
    try:
        torch.manual_seed(0)
        model = ByteLM(300, 32, 2, head_size=16).eval()
        with torch.no_grad():
            for layer in model.body.blocks:  # non-trivial channel mixing (its value projection is zero-initialised)
                layer.ffn.value.weight.normal_(std=0.1)
        ids = torch.randint(0, 256, (6, 3))
        states = {flag: model.initial_state(3) for flag in (False, True)}
        with torch.no_grad():
            for t in range(ids.shape[0]):
                logits = {}
                for flag in (False, True):
                    model.compile_step = flag
                    logits[flag], states[flag] = model.step(ids[t], states[flag])
                torch.testing.assert_close(logits[True], logits[False], atol=1e-5, rtol=1e-5)
                for compiled, eager in zip(vars(states[True]).values(), vars(states[False]).values()):
                    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    finally:
        lm.compiled_step.cache_clear()
