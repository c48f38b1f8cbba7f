import Kube
import XCTest

/// The hand-written JSON reader and writer: what JSONDecoder accepted and JSONEncoder wrote, exactly.
final class JSONTextTests: XCTestCase {
    func testValuesOfEveryKindRoundTrip() throws {
        let text =
            #"{"a":[1,-2,3.5,1e3,true,false,null],"b":"x\"y\\z/\n\t\u0001é😀","c":{},"d":[],"#
            + #""e":9223372036854775807}"#
        let json = try JSON.parse(Array(text.utf8))
        XCTAssertEqual(
            json["a"],
            .array([.integer(1), .integer(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]))
        XCTAssertEqual(json["b"]?.string, "x\"y\\z/\n\t\u{1}é😀")
        XCTAssertEqual(json["e"]?.int, Int64.max)
        // 1e3 is written 1000, as JSONEncoder wrote it, and so reads back as an integer: compare the text.
        XCTAssertEqual(try JSON.parse(json.bytes).description, json.description)
        XCTAssertEqual(
            json.description,
            #"{"a":[1,-2,3.5,1000,true,false,null],"b":"x\"y\\z/\n\t\u0001é😀","c":{},"d":[],"#
                + #""e":9223372036854775807}"#)
    }

    func testEscapesAndSurrogatePairsDecode() throws {
        XCTAssertEqual(try JSON.parse(Array(#""\u00e9\ud83d\ude00\/\b\f\r""#.utf8)).string, "é😀/\u{8}\u{c}\r")
        XCTAssertEqual(
            try JSON.parse(Array(" \n[ 1 , { \"k\" : \"v\" } ]\t".utf8)), .array([.integer(1), .object(["k": "v"])]))
    }

    func testMalformedTextIsRefused() {
        for bad in [
            "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"\\x\"", "\"\\ud800\"", "\"a\u{1}\"", "[1] x",
            "{a:1}", "'a'", "NaN", "1e999", String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
        ] {
            XCTAssertThrowsError(try JSON.parse(Array(bad.utf8)), bad)
        }
        XCTAssertThrowsError(try JSON.parse([0x22, 0xFF, 0x22]), "invalid UTF-8")
    }

    func testLongMemberNamesAreShared() throws {
        let text = #"[{"wgmesh.dev/sealed-private-key":1},{"wgmesh.dev/sealed-private-key":2}]"#
        let items = try XCTUnwrap(try JSON.parse(Array(text.utf8)).array)
        let keys = items.compactMap { $0.object?.keys.first }
        XCTAssertEqual(keys.count, 2)
        keys[0].utf8.withContiguousStorageIfAvailable { a in
            keys[1].utf8.withContiguousStorageIfAvailable { b in XCTAssertEqual(a.baseAddress, b.baseAddress) }
        }
    }
}
