// The `js-off-peak` component.
import { exportPolicy } from '../lib/kit.js';
import { OffPeak } from '../lib/off-peak.js';

export const policy = exportPolicy('js-off-peak', OffPeak);
