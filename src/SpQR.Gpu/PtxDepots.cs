// ILGPU 1.5.3 passes every inline-PTX output (CudaAsm.Emit's out arguments, EmitRef's Ref values: the mma accumulators,
// sub.f16x2, the bulk kernels' waits) through a 4-byte local-memory "depot": `mov.b64 %rdN, __local_depotK;` once, then
// `st.local` / `ld.local` at [%rdN]. ptxas normally promotes these to registers, but the eighth and thirteenth sessions saw
// it keep them in local memory (a 456-byte stack, 5-7x slower) in kernels that also contain cp.async (bench/README.md).
// Promote rewrites them as registers in the PTX text itself — each depot one `.b32` register, each access a mov — where
// it can prove that is exact: every depot 4 bytes, each address register made once from its depot and used only as the
// whole address of 32-bit ld.local / st.local. Anything else leaves the PTX as it is (returned unchanged).
using System.Text;
using System.Text.RegularExpressions;

namespace SpQR.Gpu;

public static class PtxDepots
{
    private static readonly Regex Decl = new(@"^\s*\.local\s+\.align\s+\d+\s+\.b8\s+(__local_depot\d+)\[(\d+)\];\s*$", RegexOptions.Compiled);
    private static readonly Regex Mov = new(@"^\s*mov\.(?:b64|u64)\s+(%rd\d+),\s*(__local_depot\d+);\s*$", RegexOptions.Compiled);
    private static readonly Regex Ld = new(@"^(\s*)ld\.local\.(b32|f32|u32|s32)\s+(%\w+),\s*\[(%rd\d+)\];\s*$", RegexOptions.Compiled);
    private static readonly Regex St = new(@"^(\s*)st\.local\.(b32|f32|u32|s32)\s+\[(%rd\d+)\],\s*([%\w.]+);\s*$", RegexOptions.Compiled);
    private static readonly Regex Rd = new(@"%rd\d+\b", RegexOptions.Compiled);

    /// <summary>The PTX with its local depots as registers, or unchanged where the pattern above does not hold exactly;
    /// promoted: how many depots were rewritten.</summary>
    public static string Promote(string ptx, string kernel) => Promote(ptx, kernel, out _);

    public static string Promote(string ptx, string kernel, out int promoted)
    {
        promoted = 0;
        var lines = ptx.Split('\n');
        var depots = new Dictionary<string, int>(StringComparer.Ordinal); // depot name → register index
        var addr = new Dictionary<string, string>(StringComparer.Ordinal); // address register → depot name
        foreach (var line in lines)
        {
            var m = Decl.Match(line);
            if (m.Success)
            {
                if (m.Groups[2].Value != "4") return ptx;
                depots[m.Groups[1].Value] = depots.Count;
                continue;
            }
            var v = Mov.Match(line);
            if (v.Success)
            {
                if (!depots.ContainsKey(v.Groups[2].Value) || !addr.TryAdd(v.Groups[1].Value, v.Groups[2].Value)) return ptx;
                continue;
            }
            if (line.Contains("__local_depot", StringComparison.Ordinal)) return ptx; // a depot used some other way
        }
        if (depots.Count == 0 || lines.Count(l => l.Contains(".entry", StringComparison.Ordinal)) != 1) return ptx;
        var output = new StringBuilder(ptx.Length);
        bool declared = false;
        foreach (var line in lines)
        {
            string outLine = line;
            if (Decl.IsMatch(line))
            {
                // the depots' declarations become one register array
                if (!declared) { outLine = $"\t.reg .b32 %dpt<{depots.Count}>;"; declared = true; }
                else continue;
            }
            else if (Mov.Match(line) is { Success: true } mv && addr.ContainsKey(mv.Groups[1].Value)) continue;
            else if (Ld.Match(line) is { Success: true } ld && addr.TryGetValue(ld.Groups[4].Value, out var dl))
                outLine = $"{ld.Groups[1].Value}mov.b32 {ld.Groups[3].Value}, %dpt{depots[dl]};";
            else if (St.Match(line) is { Success: true } st && addr.TryGetValue(st.Groups[3].Value, out var ds))
            {
                string val = st.Groups[4].Value;
                if (val.StartsWith("0f", StringComparison.OrdinalIgnoreCase)) val = "0x" + val[2..]; // a float literal's bits
                outLine = $"{st.Groups[1].Value}mov.b32 %dpt{depots[ds]}, {val};";
            }
            else
            {
                // an address register used anywhere else: not provably a plain cell
                foreach (Match r in Rd.Matches(line))
                    if (addr.ContainsKey(r.Value)) return ptx;
            }
            output.Append(outLine).Append('\n');
        }
        if (output.Length > 0) output.Length--; // the split's last piece had no newline after it
        promoted = depots.Count;
        return output.ToString();
    }
}
