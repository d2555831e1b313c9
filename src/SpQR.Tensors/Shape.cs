// Tensor shapes: an immutable list of non-negative dimensions, row-major (last dimension contiguous).
// Element counts are overflow-checked so a hostile file header cannot make us allocate garbage sizes.
namespace SpQR.Tensors;

public readonly struct Shape : IEquatable<Shape>
{
    private readonly long[]? _dims;

    public Shape(params long[] dims)
    {
        foreach (long d in dims)
            if (d < 0) throw new ArgumentOutOfRangeException(nameof(dims), $"negative dimension in [{string.Join(", ", dims)}]");
        _dims = (long[])dims.Clone();
        long n = 1;
        foreach (long d in dims) n = checked(n * d);
        ElementCount = n;
    }

    public Shape(params int[] dims) : this(Array.ConvertAll(dims, d => (long)d)) { }

    public int Rank => _dims?.Length ?? 0;
    public long this[int axis] => (_dims ?? [])[axis < 0 ? Rank + axis : axis];
    /// <summary>Product of the dimensions (1 for a scalar).</summary>
    public long ElementCount { get; }
    public ReadOnlySpan<long> Dims => _dims;

    /// <summary>Shape with the first dimension dropped (the shape of one row of a matrix).</summary>
    public Shape DropFirst() => new(_dims is null || _dims.Length == 0 ? throw new InvalidOperationException("scalar has no rows") : _dims[1..]);
    public Shape WithFirst(long n) { var d = (long[])_dims!.Clone(); d[0] = n; return new Shape(d); }

    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode() { var h = new HashCode(); foreach (var d in Dims) h.Add(d); return h.ToHashCode(); }
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    public override string ToString() => "[" + string.Join(", ", (_dims ?? []).Select(d => d.ToString())) + "]";
}
