# Baseline for GpuBench's decode line: Hugging Face transformers LlamaForCausalLM, LLaMA-7B shape (32 layers, hidden
# 4096, intermediate 11008, vocab 32000), random weights in fp16 on the GPU, eager attention, batch 1, one token per
# forward with the KV cache; 4 warm-up tokens then 48 timed, synchronized at the end. Then the prefill baseline.
import time, torch, transformers
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  vocab_size=32000, max_position_embeddings=2048, attn_implementation="eager")
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).half().eval()
print("transformers", transformers.__version__, "torch", torch.__version__, torch.cuda.get_device_name(0))
ids = torch.tensor([[1]], device="cuda")
with torch.no_grad():
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    tok = out.logits[:, -1:].argmax(-1)
    for _ in range(3):
        out = model(input_ids=tok, past_key_values=past, use_cache=True); past = out.past_key_values; tok = out.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    n = 48
    for _ in range(n):
        out = model(input_ids=tok, past_key_values=past, use_cache=True); past = out.past_key_values; tok = out.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize()
print(f"decode,hf_transformers_fp16,{n / (time.perf_counter() - t0):.1f} tokens/s")

# Prefill baseline for GpuBench's prefill line: a 512-token prompt in one forward (fp16, cuBLAS tensor cores, eager
# attention), one warm-up then the median of 3.
prompt = torch.randint(0, cfg.vocab_size, (1, 512), device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
with torch.no_grad():
    model(input_ids=prompt, use_cache=True)
    ts = []
    for _ in range(3):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        model(input_ids=prompt, use_cache=True)
        torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
ts.sort()
print(f"prefill,hf_transformers_fp16,{prompt.shape[1] / ts[1]:.0f} tokens/s (512-token prompt, one forward)")
