package ai.tah.app

import ai.tah.sdk.TahException

/** A one-line message for the user. */
fun TahException.describe(): String = when (this) {
    is TahException.ModelLoad -> "The model could not be loaded: $reason"
    is TahException.InvalidArgument -> "Invalid setting: $reason"
    is TahException.ContextOverflow -> "The conversation no longer fits in the context; start a new one ($reason)"
    is TahException.Busy -> "Busy: $reason"
    is TahException.Cancelled -> "Cancelled: $reason"
    is TahException.Gpu -> "GPU: $reason"
    is TahException.SessionState -> "Saved conversation: $reason"
    is TahException.Internal -> "Internal error: $reason"
}
