/**
 * The examples each command's `--help` ends with: what people type most,
 * runnable as they are (an image and the Wikipedia mirror the IPFS project
 * uses in its own examples).
 *
 * @module
 */

import type { Command } from 'commander'

const CID = 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'
const TREE = 'bafybeiaysi4s6lnjev27ln5icwm6tueaw2vdykrtjkwiphwekaywqhcjze'

const EXAMPLES: Record<string, string[]> = {
  '': [
    '# a file, every block checked against the CID',
    `cidget get ${CID} -o picture.jpg`,
    '# a name (IPNS or DNSLink); run again later: brings docs up to date',
    'cidget get /ipns/docs.ipfs.tech -o docs',
    '# go on with everything paused or interrupted',
    'cidget resume --all',
    '# the service and its dashboard on http://127.0.0.1:7690',
    'cidget serve',
    '# a download from a local test gateway (no network needed)',
    'cidget demo'
  ],
  get: [
    `cidget get ${CID} -o picture.jpg`,
    `cidget get ipfs://${TREE}/wiki -o ./wiki --limit-rate 2M     (a tree)`,
    `cidget get ${CID} -o - | sha256sum      (one file to standard output)`
  ],
  resume: ['cidget resume 7', 'cidget resume --all', 'cidget resume --all --server http://127.0.0.1:7690'],
  pause: ['cidget pause 7                (from another terminal: the running cidget pauses it)', 'cidget pause 7 --server http://127.0.0.1:7690'],
  cancel: ['cidget cancel 7               (deletes its partial data)'],
  rm: ['cidget rm 7', 'cidget rm --finished          (the records only; the files stay)', 'cidget rm --failed --finished'],
  status: ['cidget status 7', 'cidget status 7 --json | jq .currentSize'],
  list: ['cidget list', 'cidget list --status paused', 'cidget list --json | jq -r "select(.status == \\"failed\\") | .id"'],
  gateways: ['cidget gateways', `cidget gateways --sample ${CID}`, 'cidget gateways -g https://ipfs.io -g https://dweb.link --json'],
  serve: ['cidget serve', 'cidget serve --dir ~/Downloads --port 8080', 'cidget serve --host 0.0.0.0 --limit-rate 10M'],
  add: [`cidget add ${CID} -o model`, 'cidget add --from list.txt', 'cidget add --from list.txt --state postgres://cidget@db/cidget --dir /data'],
  worker: ['cidget worker --state postgres://cidget@db/cidget --dir /data', 'cidget worker --state postgres://cidget@db/cidget --concurrency 8 --json'],
  token: ['cidget token', 'cidget token --server http://127.0.0.1:7690'],
  demo: ['cidget demo']
}

/** Ends the help of the program and of each of its commands with their examples. */
export function addExamples (program: Command): void {
  const add = (cmd: Command, lines: string[] | undefined): void => {
    if (lines === undefined || lines.length === 0) return
    cmd.addHelpText('after', `\nExamples:\n${lines.map(l => `  ${l}`).join('\n')}`)
  }
  add(program, EXAMPLES[''])
  for (const cmd of program.commands) add(cmd, EXAMPLES[cmd.name()])
}

/** The commands that have examples (a test checks that every command has some). */
export const COMMANDS_WITH_EXAMPLES = Object.keys(EXAMPLES).filter(k => k !== '')
