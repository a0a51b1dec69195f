export { PartialFile, partialPath, freeSpace, ensureFreeSpace, removePartial, exists } from './partial.js'
