#!/usr/bin/env node
// The dtx command. The sources are TypeScript run through tsx's loader, so the
// bin works straight after `npm install` in a fresh clone with no build step.
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

register('tsx/esm', pathToFileURL('./'));
await import('../src/cli/main.ts');
