// Deterministic corruption of file bytes for fuzz tests: truncation, scattered byte changes, or an 8-byte field smash.
namespace SpQR.TestUtil;

public static class Mutations
{
    public static byte[] Mutate(byte[] original, int seed)
    {
        var r = new Random(seed);
        int mode = r.Next(3);
        if (mode == 0) return original.AsSpan(0, r.Next(original.Length)).ToArray();
        var b = (byte[])original.Clone();
        int Pos() => r.Next(2) == 0 ? r.Next(Math.Min(b.Length, 4096)) : r.Next(b.Length);
        if (mode == 1) { for (int i = 0, n = 1 + r.Next(6); i < n; i++) b[Pos()] = (byte)r.Next(256); }
        else
        {
            int p = Math.Min(Pos(), b.Length - 8);
            ulong v = r.Next(4) switch { 0 => ulong.MaxValue, 1 => 0, 2 => (ulong)long.MaxValue, _ => (ulong)r.NextInt64() };
            BitConverter.TryWriteBytes(b.AsSpan(p), v);
        }
        return b;
    }
}
