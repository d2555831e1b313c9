// Typed access to config.json values with errors that name the file and key (ModelFormatException).
using System.Text.Json;
using SpQR.Tensors.IO;

namespace SpQR.Transformer.Config;

internal readonly struct JsonConfig(JsonElement root, string file)
{
    public JsonElement Root { get; } = root;
    public string File { get; } = file;

    public bool Has(string key) => Root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;

    public int Int(string key) => IntOrNull(key) ?? throw new ModelFormatException(File, key, "an integer", "no value", "config.json is incomplete");

    public int? IntOrNull(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i)) throw new ModelFormatException(File, key, "an integer", v.GetRawText());
        return i;
    }

    public double? DoubleOrNull(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw new ModelFormatException(File, key, "a number", v.GetRawText());
        return v.GetDouble();
    }

    public bool? BoolOrNull(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw new ModelFormatException(File, key, "true or false", v.GetRawText());
        return v.GetBoolean();
    }

    public string? StringOrNull(string key)
    {
        if (!Root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw new ModelFormatException(File, key, "a string", v.GetRawText());
        return v.GetString();
    }

    public JsonConfig? Object(string key) =>
        Root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Object ? new JsonConfig(v, File) : null;
}
