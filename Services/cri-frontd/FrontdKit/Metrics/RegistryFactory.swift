import CoreMetrics
import Prometheus

/// swift-metrics → the registry, with each family's help text and buckets (the registry
/// insists that one name always comes with one help text, so both come from `Family`).
struct RegistryFactory: MetricsFactory {
  let registry: PrometheusCollectorRegistry

  private func help(_ label: String) -> String { FrontdMetrics.Family(rawValue: label)?.help ?? "" }

  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    registry.makeCounter(name: label, labels: dimensions, help: help(label))
  }

  func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
    registry.makeCounter(name: label, labels: dimensions, help: help(label))
  }

  func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    registry.makeGauge(name: label, labels: dimensions, help: help(label))
  }

  func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
    registry.makeGauge(name: label, labels: dimensions, help: help(label))
  }

  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    registry.makeDurationHistogram(
      name: label, labels: dimensions,
      buckets: FrontdMetrics.Family(rawValue: label)?.buckets ?? FrontdMetrics.Family.requestDuration.buckets!,
      help: help(label))
  }

  func destroyCounter(_ handler: any CounterHandler) {
    if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
  }

  func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
    if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
  }

  func destroyRecorder(_ handler: any RecorderHandler) {
    if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
  }

  func destroyMeter(_ handler: any MeterHandler) {
    if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
  }

  func destroyTimer(_ handler: any TimerHandler) {
    if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
  }
}
