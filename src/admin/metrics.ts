/**
 * Request metrics collected from the data path's exchange records.
 *
 * @module
 */
import type { ExchangeRecord } from "../context.ts";

/** Counters and histograms fed by every finished request. */
export class Metrics {
  /** Requests observed. */
  requests = 0;

  /** Records one finished request. */
  observe(_record: ExchangeRecord): void {
    this.requests++;
  }
}
