# Baseline for SpQR.GpuBench: PyTorch fp16 torch.mv (cuBLAS) on the same shapes, 200 calls queued back to back over
# weight copies totalling >= 256 MB, timed with CUDA events around the whole queue, median of 5.
import torch
print("device:", torch.cuda.get_device_name(0))
print("shape,dtype,us_per_call,GB_per_s")
for rows, cols in [(4096, 4096), (11008, 4096), (4096, 11008)]:
    for dt, name in [(torch.float16, "f16"), (torch.float32, "f32")]:
        nbytes = rows * cols * (2 if dt == torch.float16 else 4)
        copies = max(2, (256 << 20) // nbytes + 1)
        ws = [torch.randn(rows, cols, device="cuda", dtype=dt) for _ in range(copies)]
        x = torch.randn(cols, device="cuda", dtype=dt)
        for i in range(20): torch.mv(ws[i % copies], x)
        torch.cuda.synchronize()
        times = []
        for rep in range(5):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for i in range(200): torch.mv(ws[i % copies], x)
            e.record(); torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 200 * 1e3)
        t = sorted(times)[2]
        print(f"{rows}x{cols},{name},{t:.1f},{nbytes / (t * 1e-6) / 1e9:.0f}")
