import Kube

/// The part of a CustomResourceDefinition's structural openAPIV3Schema that the test server enforces, and
/// enforces as kube-apiserver does: pruning of unknown fields, then kube-openapi's validation (its order, its
/// paths, its messages), then the list-type invariants. A schema that uses anything else is refused when the
/// CRD is created, so that the test server can never accept an object a real one would refuse.
struct OpenAPISchema: Sendable {
    /// The keywords implemented here; `description` only documents.
    static let keywords: Set<String> = [
        "type", "description", "properties", "required", "items", "pattern", "maxLength", "minimum", "maximum",
        "maxItems", "enum", "format", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    ]
    static let types: Set<String> = ["object", "array", "string", "integer", "number", "boolean"]

    var type: String
    var properties: [String: OpenAPISchema] = [:]
    var required: [String] = []
    /// The schema of an array's items (zero or one: an array gives the recursion its indirection).
    private var itemSchemas: [OpenAPISchema] = []
    var pattern: String?
    var maxLength: Int64?
    var minimum: Double?
    var maximum: Double?
    var maxItems: Int64?
    var enumValues: [JSON]?
    var format: String?
    var listType: String?
    var listMapKeys: [String] = []

    var items: OpenAPISchema? { itemSchemas.first }

    /// Parses the schema at `path` (as the CRD validation names it, `...openAPIV3Schema.properties[spec]`);
    /// the errors name what is missing, malformed or not implemented.
    init(_ json: JSON, path: String, errors: inout [FieldError]) {
        let o = json.object ?? [:]
        type = o["type"]?.string ?? ""
        for key in o.keys.sorted() where !OpenAPISchema.keywords.contains(key) {
            errors.append(
                .forbidden(
                    path + "." + key,
                    """
                    the test API server (KubeTestSupport/OpenAPISchema.swift) does not implement this keyword, \
                    so it cannot refuse what kube-apiserver would refuse with it
                    """))
        }
        if type.isEmpty {
            errors.append(.required(path + ".type", "must not be empty for specified object fields"))
        } else if !OpenAPISchema.types.contains(type) {
            errors.append(
                .notSupported(path + ".type", .string(type), supported: OpenAPISchema.types.sorted()))
        }
        for (name, child) in o["properties"]?.object ?? [:] {
            properties[name] = OpenAPISchema(child, path: path + ".properties[\(name)]", errors: &errors)
        }
        required = (o["required"]?.array ?? []).compactMap(\.string)
        if let items = o["items"] {
            itemSchemas = [OpenAPISchema(items, path: path + ".items", errors: &errors)]
        } else if type == "array" {
            errors.append(.required(path + ".items", "must be specified"))
        }
        pattern = o["pattern"]?.string
        if let pattern, (try? Regex(pattern)) == nil {
            errors.append(.invalid(path + ".pattern", .string(pattern), "must be a valid regular expression"))
        }
        maxLength = o["maxLength"]?.int
        maxItems = o["maxItems"]?.int
        minimum = o["minimum"].flatMap(OpenAPISchema.number)
        maximum = o["maximum"].flatMap(OpenAPISchema.number)
        enumValues = o["enum"]?.array
        format = o["format"]?.string
        if let format, SchemaFormat(rawValue: format) == nil {
            errors.append(
                .forbidden(
                    path + ".format",
                    "the test API server (KubeTestSupport/SchemaFormat.swift) does not implement format \(format)"))
        }
        listType = o["x-kubernetes-list-type"]?.string
        listMapKeys = (o["x-kubernetes-list-map-keys"]?.array ?? []).compactMap(\.string)
        if let listType, !["atomic", "set", "map"].contains(listType) {
            errors.append(
                .notSupported(
                    path + ".x-kubernetes-list-type", .string(listType), supported: ["atomic", "set", "map"]))
        }
        if listType == "map", listMapKeys.isEmpty {
            errors.append(
                .required(path + ".x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type is map"))
        }
    }

    static func number(_ j: JSON) -> Double? {
        switch j {
        case .integer(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    // MARK: pruning

    /// The value without the fields the schema does not name, as the API server drops them when it decodes a
    /// custom resource; at the root, apiVersion, kind and metadata stay.
    func pruned(_ value: JSON, root: Bool = false) -> JSON {
        switch value {
        case .object(let o) where type == "object":
            var out: [String: JSON] = [:]
            for (k, v) in o {
                if root, ["apiVersion", "kind", "metadata"].contains(k) {
                    out[k] = v
                } else if let schema = properties[k] {
                    out[k] = schema.pruned(v)
                }
            }
            return .object(out)
        case .array(let a) where type == "array":
            guard let items else { return value }
            return .array(a.map { items.pruned($0) })
        default:
            return value
        }
    }

    // MARK: validation

    /// The failures of `value` against the schema: kube-openapi's, then the list-type invariants, as the
    /// custom resource strategy collects them. `metadata` at the root is the API server's to validate.
    func validate(_ value: JSON) -> [FieldError] {
        var errors: [FieldError] = []
        check(value, path: "", root: true, into: &errors)
        listInvariants(value, path: "", root: true, into: &errors)
        return errors
    }

    /// One kube-openapi SchemaValidator: type, string, format, number, slice, enum, object, in that order.
    private func check(_ value: JSON, path: String, root: Bool = false, into errors: inout [FieldError]) {
        guard value != .null else {
            errors.append(
                .typeInvalid(path, .string("null"), "\(path) in body must be of type \(type): \"null\""))
            if let enumValues { errors.append(enumFailure(value, enumValues, path: path)) }
            return
        }
        let actual = OpenAPISchema.jsonType(value)
        checkType(value, actual: actual, path: path, into: &errors)
        if case .string(let s) = value {
            if let maxLength, s.unicodeScalars.count > maxLength {
                errors.append(.tooLong(path, max: Int(maxLength)))
            } else if let pattern, let regex = try? Regex(pattern).matchingSemantics(.unicodeScalar),
                !s.contains(regex)
            {
                errors.append(.invalid(path, value, "\(path) in body should match '\(pattern)'"))
            }
            if let format = format.flatMap(SchemaFormat.init), !format.accepts(s) {
                errors.append(
                    .typeInvalid(
                        path, value, "\(path) in body must be of type \(format.rawValue): \(FieldError.quoted(s))"))
            }
        }
        if let number = OpenAPISchema.number(value) {
            if let minimum, number < minimum {
                errors.append(
                    .invalid(
                        path, value, "\(path) in body should be greater than or equal to \(FieldError.goFloat(minimum))"
                    ))
            }
            if let maximum, number > maximum {
                errors.append(
                    .invalid(
                        path, value, "\(path) in body should be less than or equal to \(FieldError.goFloat(maximum))"))
            }
        }
        if case .array(let a) = value {
            if let items {
                for (i, item) in a.enumerated() { items.check(item, path: "\(path)[\(i)]", into: &errors) }
            }
            if let maxItems, a.count > maxItems {
                errors.append(.tooMany(path, actual: a.count, max: Int(maxItems)))
            }
        }
        if let enumValues, !enumValues.contains(where: { OpenAPISchema.equal($0, value) }) {
            errors.append(enumFailure(value, enumValues, path: path))
        }
        if case .object(let o) = value {
            // kube-openapi walks a Go map (no order); sorted here, so that messages are stable.
            for key in properties.keys.sorted() where !(root && key == "metadata") {
                if let v = o[key] {
                    properties[key]!.check(v, path: path.isEmpty ? key : path + "." + key, into: &errors)
                }
            }
            for key in required where o[key] == nil {
                errors.append(.required(path.isEmpty ? key : path + "." + key, ""))
            }
        }
    }

    /// kube-openapi's typeValidator, with its leniencies: an integral float is an integer, an integer a number,
    /// and a string or array is not type-checked against a non-numeric type that has a format.
    private func checkType(_ value: JSON, actual: String, path: String, into errors: inout [FieldError]) {
        let floatInt: Bool = {
            if case .double(let d) = value { return d == d.rounded() && type == "integer" }
            return false
        }()
        let intFloat = actual == "integer" && type == "number"
        let goFormat: String = {
            switch value {
            case .integer: return "int64"
            case .double: return "float64"
            default: return ""
            }
        }()
        if actual != "string", actual != "array", let format,
            !(type == actual || goFormat == format || floatInt || intFloat)
        {
            errors.append(
                .typeInvalid(path, .string(goFormat), "\(path) in body must be of type \(format): \"\(goFormat)\""))
            return
        }
        if !(type == "number" || type == "integer"), format != nil, actual == "string" || actual == "array" { return }
        if !(type == actual || floatInt || intFloat) {
            errors.append(.typeInvalid(path, .string(actual), "\(path) in body must be of type \(type): \"\(actual)\""))
        }
    }

    private func enumFailure(_ value: JSON, _ values: [JSON], path: String) -> FieldError {
        .notSupported(path, value, supported: values.map { $0.string ?? $0.description })
    }

    /// x-kubernetes-list-type set (no two equal items) and map (no two items with the same keys), as
    /// apiextensions' listtype validation reports them: each repeated value once, at its second index.
    private func listInvariants(_ value: JSON, path: String, root: Bool = false, into errors: inout [FieldError]) {
        switch value {
        case .object(let o):
            for key in o.keys.sorted() where !(root && key == "metadata") {
                if let schema = properties[key] {
                    schema.listInvariants(o[key]!, path: path.isEmpty ? key : path + "." + key, into: &errors)
                }
            }
        case .array(let a):
            var keys: [JSON]?
            if listType == "set" {
                keys = a
            } else if listType == "map" {
                keys = a.map { item in
                    let present = listMapKeys.compactMap { k in item[k].map { (k, $0) } }
                    return .object(Dictionary(uniqueKeysWithValues: present))
                }
            }
            if let keys {
                var seen: [JSON: Int] = [:]
                for (i, key) in keys.enumerated() {
                    seen[key, default: 0] += 1
                    if seen[key] == 2 { errors.append(.duplicate("\(path)[\(i)]", key)) }
                }
            }
            if let items {
                for (i, item) in a.enumerated() { items.listInvariants(item, path: "\(path)[\(i)]", into: &errors) }
            }
        default:
            break
        }
    }

    static func jsonType(_ value: JSON) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "boolean"
        case .integer: return "integer"
        case .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Equality as Go compares decoded JSON after conversion: 1 and 1.0 are the same number.
    static func equal(_ a: JSON, _ b: JSON) -> Bool {
        if let x = number(a), let y = number(b) { return x == y }
        return a == b
    }
}
