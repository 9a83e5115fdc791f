import CrispConfig
import Testing

/// `[tracing]`: off unless an endpoint is set; values checked like every other key.
@Suite struct TracingConfigTests {
  @Test func offByDefault() throws {
    let config = try CrispConfig.parse("")
    #expect(!config.tracing.enabled)
    #expect(config.tracing.endpoint == "" && config.tracing.samplingRatio == 1.0)
  }

  @Test func readsTheKeysAndRoundTrips() throws {
    let config = try CrispConfig.parse(
      """
      [tracing]
      endpoint = "http://otel-collector.local:4318"
      sampling_ratio = 0.25
      export_interval_ms = 200
      """)
    #expect(config.tracing.enabled)
    #expect(config.tracing.endpoint == "http://otel-collector.local:4318")
    #expect(config.tracing.samplingRatio == 0.25)
    #expect(config.tracing.exportIntervalMs == 200)
    #expect(try CrispConfig.parse(config.renderTOML()) == config)
    // An integer ratio is a number too.
    #expect(try CrispConfig.parse("[tracing]\nsampling_ratio = 0").tracing.samplingRatio == 0)
  }

  @Test(arguments: [
    ("endpoint = \"127.0.0.1:4318\"", "tracing.endpoint"),
    ("endpoint = \"ftp://x\"", "tracing.endpoint"),
    ("endpoint = \"http:///v1/traces\"", "tracing.endpoint"),
    ("endpoint = \"http://a b\"", "tracing.endpoint"),
    ("sampling_ratio = 1.5", "tracing.sampling_ratio"),
    ("sampling_ratio = -0.1", "tracing.sampling_ratio"),
    ("sampling_ratio = \"all\"", "tracing.sampling_ratio"),
    ("export_interval_ms = 0", "tracing.export_interval_ms"),
    ("service_name = \"x\"", "tracing.service_name"),
  ])
  func refusesBadValuesNamingTheKey(_ line: String, _ key: String) {
    #expect {
      try CrispConfig.parse("[tracing]\n\(line)")
    } throws: { error in
      (error as? ConfigError)?.key == key
    }
  }
}
