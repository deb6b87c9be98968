// The `js-entries` component.
import { exportPolicy } from '../lib/kit.js';
import { Entries } from '../lib/entries.js';

export const policy = exportPolicy('js-entries', Entries);
