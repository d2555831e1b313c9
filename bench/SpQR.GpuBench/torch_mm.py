# Baseline for SpQR.GpuBench's `gemm` mode: PyTorch fp16 X @ Wᵀ (cuBLAS, tensor cores) for T tokens on the LLaMA-7B
# layer shapes — what transformers' prefill runs per projection. 50 calls queued back to back over weight copies totalling
# >= 256 MB, timed with CUDA events around the whole queue, median of 5.
import torch
print("device:", torch.cuda.get_device_name(0))
print("torch_mm,shape,T,us_per_call,TFLOP_per_s")
for rows, cols in [(4096, 4096), (11008, 4096), (4096, 11008)]:
    copies = max(2, (256 << 20) // (rows * cols * 2) + 1)
    ws = [torch.randn(rows, cols, device="cuda", dtype=torch.float16) for _ in range(copies)]
    for T in [64, 128, 256]:
        x = torch.randn(T, cols, device="cuda", dtype=torch.float16)
        for i in range(20): x @ ws[i % copies].T
        torch.cuda.synchronize()
        times = []
        for rep in range(5):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for i in range(50): x @ ws[i % copies].T
            e.record(); torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 50 * 1e3)
        t = sorted(times)[2]
        print(f"torch_mm,{rows}x{cols},{T},{t:.1f},{2 * T * rows * cols / (t * 1e-6) / 1e12:.1f}")
