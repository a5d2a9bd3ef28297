"""The Hugging Face policy on the tiny local Qwen3 model: sampling with the KV cache and left padding agrees with
teacher forcing, the LoRA reference is the base model, checkpoints and exports hold what they should, and a model
that cannot be had is one line naming model.name_or_path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from aegir.config import load_group
from aegir.errors import InputError
from aegir.models.hf_policy import HFPolicy, load_hf_policy, strip_thinking

CHAT = [{"role": "system", "content": "Você é um analista de e-commerce."},
        {"role": "user", "content": "Qual foi o faturamento do pedido 1234 em R$?"}]


def _cfg(path: Path, **overrides):
    return load_group("model", "hf", **{"name_or_path": str(path), "dtype": "float32", **overrides})


@pytest.fixture(scope="module")
def policy(hf_tiny_dir: Path) -> HFPolicy:
    torch.manual_seed(0)
    pol = load_hf_policy(_cfg(hf_tiny_dir))
    pol.model.eval()
    return pol


def _prompts(policy: HFPolicy) -> list[list[int]]:
    # three different lengths: left padding differs per row
    return [policy.encode_prompt(CHAT), policy.encode_prompt("Oi"), policy.encode_prompt("Liste três produtos.")]


def test_prompt_uses_the_chat_template_and_completion_ends_the_turn(policy: HFPolicy) -> None:
    text = policy.tokenizer.decode(policy.encode_prompt(CHAT))
    assert text.startswith("<|im_start|>system\nVocê é um analista") and text.endswith("<|im_start|>assistant\n")
    ids = policy.encode_completion("Total: R$ 1.234,56")
    assert ids[-1] == policy.tokenizer.convert_tokens_to_ids("<|im_end|>") == policy.eos_ids[0]
    assert policy.decode(ids) == "Total: R$ 1.234,56"
    assert policy.completion_units(ids) == len("Total: R$ 1.234,56".encode()) + 1


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_sampler_logprobs_equal_teacher_forced_with_left_padding(hf_tiny_dir: Path, attn: str) -> None:
    pol = load_hf_policy(_cfg(hf_tiny_dir, attn_implementation=attn))
    pol.model.eval()
    bias = torch.zeros(len(pol.tokenizer))
    bias[pol.eos_ids[0]] = 6.0  # the end of turn becomes likely (~10% a step): rows end at different lengths
    pol.model.get_base_model().lm_head.register_forward_hook(lambda module, args, out: out + bias)
    batch = pol.sample(_prompts(pol), 4, 24, temperature=1.0, top_p=1.0, generator=torch.Generator().manual_seed(3))
    assert batch.size == 12 and batch.completion_ids.shape[1] <= 24
    assert len(set(batch.lengths.tolist())) > 2 and bool((~batch.truncated).any())  # ragged, some ended
    with torch.no_grad():
        logp, entropy = pol.completion_logprobs(batch, temperature=1.0, with_entropy=True)
    assert float((logp - batch.sampler_logp).abs().max()) <= 1e-4
    assert entropy is not None and float((entropy * (1 - batch.mask)).abs().max()) == 0.0
    # masks come from lengths: 1 up to and including the first end-of-turn token, 0 after
    for row in range(batch.size):
        n = int(batch.lengths[row])
        assert float(batch.mask[row, :n].min()) == 1.0 and float(batch.mask[row, n:].sum()) == 0.0
        tokens = batch.completion_ids[row, :n].tolist()
        ended = any(t in pol.eos_ids for t in tokens)
        assert bool(batch.truncated[row]) == (not ended)
        if ended:
            assert tokens[-1] in pol.eos_ids and not any(t in pol.eos_ids for t in tokens[:-1])


def test_temperature_and_top_p_score_what_the_sampler_drew(policy: HFPolicy) -> None:
    batch = policy.sample(_prompts(policy), 2, 10, temperature=0.7, top_p=0.9,
                          generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logp, _ = policy.completion_logprobs(batch, temperature=0.7)
    # the nucleus is a sampling restriction; log-probs are those of logits / T (as for the byte models)
    assert float((logp - batch.sampler_logp).abs().max()) <= 1e-4


def test_same_generator_seed_same_completions(policy: HFPolicy) -> None:
    runs = [policy.sample(_prompts(policy), 3, 12, temperature=1.0, top_p=1.0,
                          generator=torch.Generator().manual_seed(7)).completion_ids for _ in range(2)]
    other = policy.sample(_prompts(policy), 3, 12, temperature=1.0, top_p=1.0,
                          generator=torch.Generator().manual_seed(8)).completion_ids
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], other)


def test_lora_reference_is_the_base_model_without_a_copy(hf_tiny_dir: Path) -> None:
    pol = load_hf_policy(_cfg(hf_tiny_dir))
    pol.model.eval()
    frozen_base = copy.deepcopy(pol.model.get_base_model())  # before training: LoRA B = 0, so this is the base
    with torch.no_grad():
        for name, param in pol.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # "trained" adapter
    assert pol.enable_reference() is None  # no second model in memory
    batch = pol.sample(_prompts(pol), 2, 12, temperature=1.0, top_p=1.0, generator=torch.Generator().manual_seed(0))
    reference = pol.reference_logprobs(batch, temperature=1.0)
    copy_policy = HFPolicy(frozen_base, pol.tokenizer, lora=False)
    with torch.no_grad():
        expected, _ = copy_policy.completion_logprobs(batch, temperature=1.0)
        current, _ = pol.completion_logprobs(batch, temperature=1.0)
    assert float((reference - expected).abs().max()) <= 1e-5
    assert float((current - expected).abs().max()) > 1e-3  # the adapter is back on after the reference pass


def test_full_finetuning_reference_is_a_frozen_copy(hf_tiny_dir: Path) -> None:
    pol = load_hf_policy(_cfg(hf_tiny_dir, lora={"enabled": False}))
    assert not pol.adapter_only and all(p.requires_grad for p in pol.model.parameters())
    reference = pol.enable_reference()
    assert reference is not None and reference is not pol.model
    assert not any(p.requires_grad for p in reference.parameters())


def test_lora_trains_only_the_adapter(policy: HFPolicy) -> None:
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    assert policy.adapter_only


def test_thinking_is_stripped_for_rewards_only(policy: HFPolicy) -> None:
    assert strip_thinking("<think>\nvou somar\n</think>\n\nTotal: 3") == "Total: 3"
    assert strip_thinking("Total: 3 <think>ainda pensando") == "Total: 3"
    assert strip_thinking("sem pensamento") == "sem pensamento"
    think = policy.tokenizer("<think>x</think>A", add_special_tokens=False)["input_ids"]
    raw = policy.decode(think)
    assert raw == "<think>x</think>A" and policy.reward_text(raw) == "A"


def test_adapter_export_reloads_with_peft_and_merge_keeps_logits(policy: HFPolicy, hf_tiny_dir: Path,
                                                                tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    assert policy.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    size = (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    n_adapter = sum(p.numel() for p in policy.model.parameters() if p.requires_grad)
    assert size < 4 * n_adapter + 100_000  # the adapter only: fp32 values + header, no base weights
    ids = torch.tensor([policy.encode_prompt(CHAT)])
    with torch.no_grad():
        expected = policy.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(hf_tiny_dir, dtype=torch.float32)
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        assert float((reloaded(input_ids=ids).logits - expected).abs().max()) <= 1e-5
        merged = reloaded.merge_and_unload()
        assert float((merged(input_ids=ids).logits - expected).abs().max()) <= 1e-4


def test_missing_models_are_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"^model\.name_or_path: .*no config\.json"):
        load_hf_policy(_cfg(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"^model\.name_or_path: cannot load 'nobody/no-such-model-xyz'") as err:
        load_hf_policy(_cfg("nobody/no-such-model-xyz"))
    assert "\n" not in str(err.value) and "hf download" in str(err.value)
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text('{"model_type": "qwen3"}')
    with pytest.raises(InputError, match=r"^model\.name_or_path: cannot load"):
        load_hf_policy(_cfg(weightless))


def test_sft_pairs_mask_the_completion_and_its_end_of_turn(policy: HFPolicy) -> None:
    from aegir.loops.sft import collate_with_units

    records = [{"prompt": CHAT, "reference": "R$ 10,00"}, {"prompt": "Oi", "reference": "Olá!"}]
    ids, mask, units = collate_with_units(records, 512, policy)
    for row, record in enumerate(records):
        target = ids[row][mask[row] > 0].tolist()
        assert target == policy.encode_completion(record["reference"])
        assert float(units[row]) == len(record["reference"].encode()) + 1
    assert int(ids[1, -1]) == policy.pad_id  # right padding for teacher forcing
