export { PartialFile, partialPath, freeSpace, ensureFreeSpace, removePartial, renameIntoPlace, exists } from './partial.js'
