// GGUF tensor infos, alignment and data, on files built here byte by byte (the shared GGUFs are vocab-only).
using System.Text;
using FsCheck.Xunit;
using SpQR.Tensors.IO;
using Xunit;

namespace SpQR.Tensors.Tests;

public class GgufTensorTests
{
    /// <summary>A minimal GGUF v3 writer for tests: metadata of every scalar type and an array, then tensors.</summary>
    internal static byte[] Build(uint alignment, params (string Name, uint Type, long[] DimsFastestFirst, byte[] Data)[] tensors)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        void Str(string s) { var b = Encoding.UTF8.GetBytes(s); w.Write((ulong)b.Length); w.Write(b); }
        w.Write(0x46554747u); w.Write(3u); w.Write((ulong)tensors.Length);
        var kvs = new List<Action>
        {
            () => { Str("general.alignment"); w.Write(4u); w.Write(alignment); },
            () => { Str("u8"); w.Write(0u); w.Write((byte)7); }, () => { Str("i8"); w.Write(1u); w.Write((sbyte)-7); },
            () => { Str("u16"); w.Write(2u); w.Write((ushort)700); }, () => { Str("i16"); w.Write(3u); w.Write((short)-700); },
            () => { Str("i32"); w.Write(5u); w.Write(-70000); }, () => { Str("f32"); w.Write(6u); w.Write(1.5f); },
            () => { Str("bool"); w.Write(7u); w.Write((byte)1); }, () => { Str("str"); w.Write(8u); Str("héllo"); },
            () => { Str("u64"); w.Write(10u); w.Write(ulong.MaxValue); }, () => { Str("i64"); w.Write(11u); w.Write(long.MinValue); },
            () => { Str("f64"); w.Write(12u); w.Write(2.25); },
            () => { Str("nested"); w.Write(9u); w.Write(9u); w.Write(2ul); w.Write(6u); w.Write(2ul); w.Write(1f); w.Write(2f); w.Write(8u); w.Write(1ul); Str("x"); },
        };
        w.Write((ulong)kvs.Count);
        foreach (var kv in kvs) kv();
        long offset = 0;
        var offsets = new List<long>();
        foreach (var t in tensors)
        {
            Str(t.Name); w.Write((uint)t.DimsFastestFirst.Length); foreach (var d in t.DimsFastestFirst) w.Write((ulong)d);
            w.Write(t.Type); w.Write((ulong)offset); offsets.Add(offset);
            offset = (offset + t.Data.Length + alignment - 1) / alignment * alignment;
        }
        while (ms.Length % alignment != 0) w.Write((byte)0);
        long start = ms.Length;
        for (int i = 0; i < tensors.Length; i++) { while (ms.Length < start + offsets[i]) w.Write((byte)0); w.Write(tensors[i].Data); }
        return ms.ToArray();
    }

    private static byte[] Floats(params float[] f) => f.SelectMany(BitConverter.GetBytes).ToArray();

    internal static byte[] Sample() => Build(64,
        ("w.f32", 0, [3, 2], Floats(1, 2, 3, 4, 5, 6)),
        ("w.f16", 1, [4], new Half[] { (Half)1, (Half)(-2), (Half)0.5f, (Half)8 }.SelectMany(h => BitConverter.GetBytes(h)).ToArray()),
        ("w.bf16", 30, [2], new byte[] { 0x80, 0x3F, 0x00, 0xC0 }),
        ("w.q4_0", 2, [32, 1], new byte[18]));

    [Fact]
    public void Tensors_metadata_and_alignment()
    {
        using var s = new PinnedBytesStorage(Sample());
        using var g = GgufFile.Parse(s, "sample.gguf");
        Assert.Equal(64, g.Alignment);
        Assert.Equal(0, g.DataStart % 64);
        Assert.Equal((byte)7, g.Metadata["u8"]); Assert.Equal((sbyte)-7, g.Metadata["i8"]); Assert.Equal((ushort)700, g.Metadata["u16"]);
        Assert.Equal((short)-700, g.Metadata["i16"]); Assert.Equal(-70000, g.Metadata["i32"]); Assert.Equal(1.5f, g.Metadata["f32"]);
        Assert.Equal(true, g.Metadata["bool"]); Assert.Equal("héllo", g.Metadata["str"]); Assert.Equal(ulong.MaxValue, g.Metadata["u64"]);
        Assert.Equal(long.MinValue, g.Metadata["i64"]); Assert.Equal(2.25, g.Metadata["f64"]);
        var nested = (GgufArray)g.Metadata["nested"];
        Assert.Equal(new float[] { 1, 2 }, ((GgufArray)nested.Values.GetValue(0)!).Values);
        var f32 = g.GetTensor("w.f32");
        Assert.Equal(new Shape(2, 3), f32.Shape); // GGUF dims are fastest-first
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, f32.AsReadOnlySpan<float>().ToArray());
        using var h = g.GetTensor("w.f16").ToF32();
        Assert.Equal(new float[] { 1, -2, 0.5f, 8 }, h.AsReadOnlySpan<float>().ToArray());
        using var b = g.GetTensor("w.bf16").ToF32();
        Assert.Equal(new float[] { 1, -2 }, b.AsReadOnlySpan<float>().ToArray());
        Assert.Equal("Q4_0", g.TensorInfo("w.q4_0").TypeName);
        var e = Assert.Throws<NotSupportedException>(() => g.GetTensor("w.q4_0"));
        Assert.Contains("Q4_0", e.Message);
    }

    [Fact]
    public void Misaligned_offsets_and_bad_versions_are_typed_errors()
    {
        var bytes = Sample();
        bytes[4] = 1; // version 1
        using (var s = new PinnedBytesStorage(bytes)) Assert.Contains("version", Assert.Throws<ModelFormatException>(() => GgufFile.Parse(s, "x.gguf")).Message);
        var truncated = Sample()[..^20];
        using (var s = new PinnedBytesStorage(truncated)) Assert.Contains("w.q4_0", Assert.Throws<ModelFormatException>(() => GgufFile.Parse(s, "x.gguf")).Message);
    }

    [Property(MaxTest = 200)]
    public void Mutations_of_a_gguf_with_tensors_give_only_typed_errors(int seed)
    {
        using var s = new PinnedBytesStorage(FuzzTests.Mutate(Sample(), seed));
        try
        {
            using var g = GgufFile.Parse(s, "sample.gguf");
            foreach (var t in g.Tensors)
                if (GgmlTypes.AsDType(t.GgmlType) is not null) { var v = g.GetTensor(t.Name); if (v.ByteLength > 0) _ = v.Bytes[^1]; }
        }
        catch (ModelFormatException) { }
    }
}
