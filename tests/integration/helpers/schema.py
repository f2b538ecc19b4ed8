"""A small JSON Schema checker for the OpenAPI document's component schemas: $ref (local),
type (string or list), enum, required, properties, additionalProperties, items. Returns the
problems as "pointer: message" strings."""


def _type_ok(value, t):
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    return True


def validate(value, schema, root, path="", depth=0):
    problems = []
    if depth > 32:
        return problems
    if "$ref" in schema:
        ref = schema["$ref"]
        target = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return validate(value, target, root, path, depth + 1)
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_type_ok(value, x) for x in types):
            return [f"{path or '/'}: expected {t}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path or '/'}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                problems.append(f"{path}/{k}: required member missing")
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                problems += validate(v, props[k], root, f"{path}/{k}", depth + 1)
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += validate(v, schema["additionalProperties"], root, f"{path}/{k}",
                                     depth + 1)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value[:50]):
            problems += validate(v, schema["items"], root, f"{path}/{i}", depth + 1)
    return problems
